/** path_has_protocol: a colon before any slash ("file:…", "nbd:…", "json:{…}"), so the name is not a host path. */
export function hasProtocolPrefix(name: string): boolean {
  const colon = name.indexOf(':');
  const slash = name.indexOf('/');
  return colon > 0 && (slash < 0 || colon < slash);
}
