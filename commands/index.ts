import type { CommandDef } from '../src/engine/command';
import clusters from './clusters';
import help from './help';
import status from './status';
import removeMember from './remove-member';
import addMember from './add-member';
import replaceMember from './replace-member';

/** Every subcommand, in the order help lists them. */
export const commands: readonly CommandDef[] = [status, replaceMember, removeMember, addMember, clusters, help];
