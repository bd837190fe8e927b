/** Splits a QEMU option string at commas; ",," is a literal comma (QemuOpts and qemu-img -o alike). */
export function splitCommaList(text: string): string[] {
  const items: string[] = [];
  let cur = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === ',') {
      if (text[i + 1] === ',') {
        cur += ',';
        i++;
        continue;
      }
      items.push(cur);
      cur = '';
    } else cur += c;
  }
  items.push(cur);
  return items;
}
