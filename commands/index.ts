import type { CommandDef } from '../src/engine/command';
import clusters from './clusters';
import help from './help';
import status from './status';
import fleet from './fleet';
import diagnose from './diagnose';
import snapshotSave from './snapshot-save';
import snapshotList from './snapshot-list';
import removeMember from './remove-member';
import addMember from './add-member';
import restore from './restore';
import replaceMember from './replace-member';
import defrag from './defrag';
import alarm from './alarm';
import alarmDisarm from './alarm-disarm';
import logs from './logs';
import jobs from './jobs';
import audit from './audit';
import approve from './approve';
import forceNewCluster from './force-new-cluster';
import reject from './reject';
import cancel from './cancel';
import forget from './forget';

/** Every subcommand, in the order help lists them. */
export const commands: readonly CommandDef[] = [status, fleet, diagnose, snapshotSave, snapshotList, alarm, logs, replaceMember, removeMember, addMember, restore, forceNewCluster, defrag, alarmDisarm, approve, reject, cancel, jobs, audit, forget, clusters, help];
