// STUB: being written now; the API below is final.
import type { CreateOptions } from '../create.js';
import type { BlockImage, Extent, ImageFormat, ImageInfo } from '../types.js';

export type BackingOpener = (path: string, format: ImageFormat | undefined) => Promise<BlockImage>;

export interface Qcow2OpenOptions {
  readOnly?: boolean;
  openBacking?: boolean;
  openBackingImage: BackingOpener;
}

export class Qcow2Image implements BlockImage {
  readonly format = 'qcow2' as const;
  readonly filename = '';
  readonly readOnly = true;
  static async open(_path: string, _opts: Qcow2OpenOptions): Promise<Qcow2Image> { throw new Error('not yet'); }
  static async create(_path: string, _opts: CreateOptions, _open: BackingOpener): Promise<void> { throw new Error('not yet'); }
  size(): number { return 0; }
  async read(_o: number, _l: number): Promise<Uint8Array> { throw new Error('not yet'); }
  async write(_o: number, _d: Uint8Array): Promise<void> { throw new Error('not yet'); }
  async writeZeroes(_o: number, _l: number): Promise<void> { throw new Error('not yet'); }
  async discard(_o: number, _l: number): Promise<void> { throw new Error('not yet'); }
  async flush(): Promise<void> {}
  async blockStatus(_o: number, _l: number): Promise<Extent> { throw new Error('not yet'); }
  async actualSize(): Promise<number> { return 0; }
  info(): ImageInfo { throw new Error('not yet'); }
  backing(): BlockImage | undefined { return undefined; }
  async close(): Promise<void> {}
}
