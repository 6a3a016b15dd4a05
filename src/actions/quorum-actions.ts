/** Executor actions of quorum-loss recovery (force-new-cluster). */
import type { ActionName } from '../engine/plan';
import type { Action } from './actions';

export const quorumActions: Partial<Record<ActionName, Action>> = {};
