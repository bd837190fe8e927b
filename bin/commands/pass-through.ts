import type { Command } from 'commander';

/**
 * A subcommand that takes another program's command line: commander only
 * hands over the raw arguments (no help option, nothing refused), and
 * `run` parses them with that program's own rules and messages.
 */
export function addPassThroughCommand(program: Command, name: string, description: string, run: (args: string[]) => Promise<number>): void {
  program
    .command(name)
    .description(description)
    .helpOption(false)
    .passThroughOptions()
    .allowUnknownOption()
    .allowExcessArguments()
    .argument('[args...]')
    .action(async (args: string[]) => {
      process.exitCode = await run(args);
    });
}
