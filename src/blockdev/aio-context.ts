import { BlockNode } from './node.js';

/**
 * bdrv_try_change_aio_context's refusal: moving `node` to another
 * iothread moves every node reached through its parents and children, and
 * a device's BlockBackend among their parents will not move (blockemu has
 * one event loop; only the check is QEMU's). The message, or undefined.
 */
export function iothreadChangeRefusal(node: BlockNode): string | undefined {
  const seen = new Set<BlockNode>();
  const up = (n: BlockNode): string | undefined => {
    if (seen.has(n)) return undefined;
    seen.add(n);
    for (const c of n.parents) {
      const owner = c.owner as { isBackend?: boolean; devicePath?: string };
      if (owner.isBackend && owner.devicePath !== undefined) return 'Cannot change iothread of active block backend';
      if (c.owner instanceof BlockNode) {
        const r = up(c.owner);
        if (r) return r;
      }
    }
    for (const c of n.childList()) {
      const r = up(c.node);
      if (r) return r;
    }
    return undefined;
  };
  return up(node);
}
