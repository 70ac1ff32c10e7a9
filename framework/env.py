"""Every environment variable the framework itself sets or reads, by name (a leaf: it imports nothing).

The CLI sets them for the worker processes it starts, which inherit them; tests set some to reach into the
workers. Variables of other tools (RANK, WORLD_SIZE, SLURM_*, PARALLELISM_CONFIG_*) are not listed here."""

START_ENV = "FRAMEWORK_T0"
"""When the command started (seconds since the epoch), set once by the CLI and inherited by every worker."""
JOB_STARTED_ENV = "FRAMEWORK_T_JOB"
"""Seconds from the command's start to the start of this job (0 for the first; a multirun's later jobs start later),
set by the CLI for the workers' start-up record."""
VALIDATED_ENV = "FRAMEWORK_T_VALIDATED"
"""Seconds from the command's start to the end of validation, set by the CLI for the workers' start-up record."""
OWN_LAUNCH_ENV = "FRAMEWORK_OWN_LAUNCH"
""""1" in the workers our own launcher started (not torchrun/SLURM): they take the run directory from the call, and
report a failure through <run dir>/.failed.rank<N>."""
JOB_ENV = "FRAMEWORK_JOB"
"""The launch's id, inherited by the workers and everything they start: what `launch.reap` kills after the job."""
LOG_STDERR_ENV = "FRAMEWORK_LOG_STDERR"
"""Set (to anything): the console tracker writes its step lines to stderr instead of stdout."""
FORKSERVER_ENV = "FRAMEWORK_FORKSERVER"
""""0": the CLI starts no forkserver and spawns its workers (each then imports torch, transformers and DeepSpeed
itself); framework.launch.start_forkserver."""
TTY_ENV = "FRAMEWORK_CONSOLE_TTY"
"""Set to 1 for the workers while the command's own stdout is a terminal: the console tracker still draws its bar."""
PYCACHE_ENV = "FRAMEWORK_PYCACHE"
"""Where the command keeps compiled bytecode when PYTHONDONTWRITEBYTECODE forbids writing it beside the sources
(framework.bytecode; by default ~/.cache/framework/pycache, and only where torch ships no bytecode); "0": nowhere,
every process compiles what has no bytecode, as the variable asks. Set by the CLI for the processes it starts, which
turn writing back on there."""
