"""export: the Gaussians of a Sync-4DGS run as standard 3DGS .ply files."""
from __future__ import annotations

import click

from taichi_syncnerf.cli.common import init_runtime, runtime_options, user_errors
from taichi_syncnerf.errors import UserError


@click.command()
@click.argument("run", type=click.Path(file_okay=False))
@click.option("--time", "time_frames", type=float, default=None,
              help="Scene time in frames (the test camera's clock; fractional allowed).")
@click.option("--frames", "frames", type=click.Choice(["all"]), default=None,
              help="'all': one .ply per frame into the folder --out (frame_00000.ply, ...).")
@click.option("--out", required=True, type=click.Path(), help="Output .ply (with --time) or folder (--frames all).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@runtime_options
@user_errors
def export(run, time_frames, frames, out, quiet, arch, threads, precision):
    """Write the Gaussians of a sync-4dgs RUN deformed at a scene time, in the 3DGS .ply layout
    (binary little-endian: x y z, nx ny nz, f_dc_*, f_rest_*, opacity, scale_*, rot_*)."""
    from taichi_syncnerf.models.gaussians.export import export_run
    from taichi_syncnerf.run_folder import RunFolder

    if (time_frames is None) == (frames is None):
        raise UserError("give one of --time F (one .ply) or --frames all (one .ply per frame)")
    folder = RunFolder.open(run)
    kind = folder.config()["model"]["kind"]
    if kind != "sync-4dgs":
        raise UserError(f"{run}: a {kind} run has no Gaussians to export (export needs a sync-4dgs run)")
    init_runtime(arch, threads, precision)
    paths = export_run(run, out, time=time_frames, all_frames=frames == "all", progress=not quiet)
    click.echo(f"wrote {paths[0] if len(paths) == 1 else f'{len(paths)} files to {out}'}")


COMMANDS = [export]
