"""`python -m wxgate.sim` runs the simulator without the wxgate CLI."""

import typer

from wxgate.sim.cli import sim_command

typer.run(sim_command)
