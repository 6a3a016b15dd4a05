import type { CommandDef } from '../src/engine/command';
import clusters from './clusters';
import help from './help';
import status from './status';

/** Every subcommand, in the order help lists them. */
export const commands: readonly CommandDef[] = [status, clusters, help];
