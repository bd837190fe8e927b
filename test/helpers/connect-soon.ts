import { setTimeout as sleep } from 'node:timers/promises';
import { QmpClient } from '../../src/qmp/client.js';

/** Connects once the daemon listens (a stale socket file may exist from the start, so waiting for the path is not enough). */
export async function connectSoon(path: string): Promise<QmpClient> {
  for (let i = 0; ; i++) {
    try {
      return await QmpClient.connect(path);
    } catch (err) {
      if (i > 200) throw err;
      await sleep(25);
    }
  }
}
