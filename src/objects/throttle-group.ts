import { applyLimits, BPS_READ, BPS_TOTAL, BPS_WRITE, limitsOf, newThrottleConfig, OPS_READ, OPS_TOTAL, OPS_WRITE, type ThrottleConfig, type ThrottleLimits } from '../blockdev/throttle/config.js';
import type { ThrottleGroup, ThrottleGroups } from '../blockdev/throttle/group.js';
import { type Int64Value, objectError, QomObject, type QomProperty } from './qom-object.js';

const UINT_MAX = 4294967295;

/** The legacy x-* properties (throttle-groups.c's properties[]), in registration order. */
const X_PROPERTIES: ReadonlyArray<readonly [string, number, 'avg' | 'max' | 'burstLength' | 'opSize']> = [
  ['x-iops-total', OPS_TOTAL, 'avg'],
  ['x-iops-total-max', OPS_TOTAL, 'max'],
  ['x-iops-total-max-length', OPS_TOTAL, 'burstLength'],
  ['x-iops-read', OPS_READ, 'avg'],
  ['x-iops-read-max', OPS_READ, 'max'],
  ['x-iops-read-max-length', OPS_READ, 'burstLength'],
  ['x-iops-write', OPS_WRITE, 'avg'],
  ['x-iops-write-max', OPS_WRITE, 'max'],
  ['x-iops-write-max-length', OPS_WRITE, 'burstLength'],
  ['x-bps-total', BPS_TOTAL, 'avg'],
  ['x-bps-total-max', BPS_TOTAL, 'max'],
  ['x-bps-total-max-length', BPS_TOTAL, 'burstLength'],
  ['x-bps-read', BPS_READ, 'avg'],
  ['x-bps-read-max', BPS_READ, 'max'],
  ['x-bps-read-max-length', BPS_READ, 'burstLength'],
  ['x-bps-write', BPS_WRITE, 'avg'],
  ['x-bps-write-max', BPS_WRITE, 'max'],
  ['x-bps-write-max-length', BPS_WRITE, 'burstLength'],
  ['x-iops-size', 0, 'opSize'],
];

/**
 * The `throttle-group` object (block/throttle-groups.c): limits shared by
 * the throttle nodes that name it. Before it is complete its x-* and
 * `limits` properties fill a configuration; completing checks it and
 * makes the group; afterwards only `limits` may change (all members at
 * once, checked as a whole). It cannot be deleted while a node uses it.
 */
export class ThrottleGroupObject extends QomObject {
  readonly typeName = 'throttle-group';
  private pending: ThrottleConfig = newThrottleConfig();
  private group: ThrottleGroup | undefined;

  constructor(
    private readonly id: string,
    private readonly groups: ThrottleGroups,
  ) {
    super();
  }

  private get cfg(): ThrottleConfig {
    return this.group ? this.group.config() : this.pending;
  }

  protected ownGroups(): QomProperty[][] {
    const props: QomProperty[] = X_PROPERTIES.map(([name, bucket, field]) => ({
      name,
      type: 'int',
      get: () => (field === 'opSize' ? this.cfg.opSize : this.cfg.buckets[bucket]![field]),
      set: (v: unknown) => this.setLegacy(name, bucket, field, v as Int64Value),
    }));
    props.push({ name: 'limits', type: 'ThrottleLimits', get: () => limitsOf(this.cfg), set: (v) => this.setLimits(v as ThrottleLimits) });
    return [props];
  }

  /** throttle_group_set: one value, refused once the group exists. */
  private setLegacy(name: string, bucket: number, field: 'avg' | 'max' | 'burstLength' | 'opSize', value: Int64Value): void {
    if (this.group) throw objectError('Property cannot be set after initialization');
    const v = BigInt(value);
    if (v < 0n) throw objectError('Property values cannot be negative');
    if (field === 'burstLength' && v > BigInt(UINT_MAX)) throw objectError(`${name} value must be in therange [0, ${UINT_MAX}]`);
    if (field === 'opSize') this.pending.opSize = Number(v);
    else this.pending.buckets[bucket]![field] = Number(v);
  }

  /** throttle_group_set_limits: the members given change, the whole is checked, the levels start again empty. */
  private setLimits(limits: ThrottleLimits): void {
    const cfg = applyLimits(this.cfg, limits);
    if (this.group) this.group.configure(cfg);
    else this.pending = cfg;
  }

  /** throttle_group_obj_complete: the group takes the object's id as its name. */
  override complete(): void {
    this.group = this.groups.create(this.id, this.pending);
  }

  /** throttle_group_can_be_deleted: no throttle node holds a reference. */
  override canBeDeleted(): boolean {
    return !this.group || this.group.memberCount === 0;
  }

  override finalize(): void {
    if (this.group) this.groups.delete(this.id);
    this.group = undefined;
  }
}
