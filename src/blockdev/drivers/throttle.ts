import { BlockError } from '../../image/errors.js';
import type { NodeChild } from '../child.js';
import type { NamePolicy } from '../filename.js';
import type { BlockNode, WriteFlags, ZeroFlags } from '../node.js';
import { absorb } from '../options.js';
import type { ReopenState, StagedReopen } from '../reopen-driver.js';
import { ThrottleGroupMember, type ThrottleGroups } from '../throttle/group.js';
import { PassThroughFilter } from './filter-node.js';

/** throttle_parse_options: the group named must exist. */
function findGroup(groups: ThrottleGroups, name: string | undefined) {
  if (name === undefined) throw new BlockError('INVALID_ARGUMENT', 'Please specify a throttle group');
  const tg = groups.get(name);
  if (!tg) throw new BlockError('INVALID_ARGUMENT', `Throttle group '${name}' does not exist`);
  return tg;
}

const THROTTLE_NAMING: NamePolicy = { protocol: false, strong: ['throttle-group'] };

/**
 * The `throttle` filter (block/throttle.c): every read, write, zero write
 * and discard waits for its throttle group's limits before it passes to
 * `file`; flushes pass at once. A reopen may move the node to another
 * group.
 */
export class ThrottleNode extends PassThroughFilter {
  readonly driver = 'throttle';
  private readonly member = new ThrottleGroupMember();

  private constructor(
    name: string,
    fileLink: NodeChild,
    readOnly: boolean,
    private readonly groups: ThrottleGroups,
  ) {
    super(name, readOnly, [fileLink]);
  }

  static open(name: string, fileLink: NodeChild, readOnly: boolean, groupName: string | undefined, groups: ThrottleGroups): ThrottleNode {
    const tg = findGroup(groups, groupName);
    const node = new ThrottleNode(name, fileLink, readOnly, groups);
    tg.register(node.member);
    return node;
  }

  /** The group's name (throttle_group_get_name). */
  get groupName(): string | undefined {
    return this.member.group?.name;
  }

  /** throttle_strong_runtime_opts: the group is part of what the node is. */
  override get namePolicy(): NamePolicy {
    return THROTTLE_NAMING;
  }

  protected get filtered(): BlockNode {
    return this.child('file')!;
  }

  override get supportsReopen(): boolean {
    return true;
  }

  /** throttle_reopen_prepare/commit: the group is looked up now and changed at commit. */
  override async prepareReopen(state: ReopenState): Promise<StagedReopen> {
    const name = absorb(state.options, ['throttle-group']).get('throttle-group');
    const tg = findGroup(this.groups, name);
    return {
      commit: () => {
        if (tg === this.member.group) return;
        this.member.group?.unregister(this.member);
        tg.register(this.member);
      },
    };
  }

  protected override async doRead(offset: number, length: number): Promise<Uint8Array> {
    await this.member.intercept(length, false);
    return this.filtered.read(offset, length);
  }
  protected override async doReadInto(buf: Uint8Array, offset: number): Promise<void> {
    await this.member.intercept(buf.length, false);
    return this.filtered.readInto(buf, offset);
  }
  protected override async doWrite(offset: number, data: Uint8Array, flags: WriteFlags): Promise<void> {
    await this.member.intercept(data.length, true);
    return this.filtered.write(offset, data, flags);
  }
  protected override async doWriteZeroes(offset: number, length: number, flags: ZeroFlags): Promise<void> {
    await this.member.intercept(length, true);
    return this.filtered.writeZeroes(offset, length, flags);
  }
  protected override async doDiscard(offset: number, length: number): Promise<void> {
    await this.member.intercept(length, true);
    return this.filtered.discard(offset, length);
  }
  /** throttle_co_drain_begin: queued and new requests run without limits. */
  override drainForShutdown(): void {
    this.member.limitsDisabled++;
    this.member.restart();
  }
  /**
   * throttle_close after the drain: a drained member's waiting requests
   * run without limits (throttle_co_drain_begin), then it leaves its group.
   */
  protected override async doClose(): Promise<void> {
    this.member.limitsDisabled++;
    this.member.restart();
    this.member.group?.unregister(this.member);
  }
}
