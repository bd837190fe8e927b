/** path_has_protocol: a colon before any slash ("file:…", "nbd:…", "json:{…}"), so the name is not a host path. */
export function hasProtocolPrefix(name: string): boolean {
  const colon = name.indexOf(':');
  const slash = name.indexOf('/');
  return colon > 0 && (slash < 0 || colon < slash);
}

/**
 * raw_parse_filename: the host path a `file:` name means. The prefix is
 * stripped, and a rest that would then look like a protocol ("file:a:b")
 * gets "./" so it is not taken for one again.
 */
export function fileProtocolPath(name: string): string {
  if (!name.startsWith('file:')) return name;
  const path = name.slice('file:'.length);
  return hasProtocolPrefix(path) ? `./${path}` : path;
}
