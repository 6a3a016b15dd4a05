/** Executor actions of restores from a snapshot (issue 4): filled in by the restore work. */
import type { ActionName } from '../engine/plan';
import type { Action } from './actions';

export const restoreActions: Partial<Record<ActionName, Action>> = {};
