"""``pcxbatch audit``: the audit trail's key, head, verification and evidence packs.

In: a report folder (default ``reports``), a run folder, or an evidence pack, and the head and
fingerprint kept outside. Out: what is printed, and :attr:`ExitCode.NOT_VERIFIED` when a check
finds the log, a report file or a journal not as recorded.
"""

from __future__ import annotations

from pathlib import Path

import click

from pcxbatch.cli.options import debug_option, safe
from pcxbatch.errors import ExitCode, UnusableError

FOLDER = click.argument(
    "folder", type=click.Path(path_type=Path, file_okay=False), default="reports", required=False
)


@click.group()
def audit() -> None:
    """The audit trail: who did what, when, provably unchanged.

    \b
    Every run, resume, stop, cancel and preview in a report folder is an entry of its
    append-only, hash-chained audit.jsonl, with checkpoints signed by the installation's key.
    Keep the key's fingerprint (audit key) and the latest head (audit head) somewhere else,
    e.g. in the change ticket: with them, audit verify proves nothing was edited, cut or
    re-signed.
    """


@audit.command("key")
@FOLDER
@debug_option
def key(folder: Path) -> ExitCode:
    """Print the signing key's public half and its fingerprint (made if there is none)."""
    from pcxbatch.audit import AuditLog
    from pcxbatch.reportdir import prepare

    public, fingerprint = AuditLog(prepare(folder)).public_key()
    click.echo(f"public key (Ed25519, base64): {public}")
    click.echo(f"fingerprint: {fingerprint}")
    return ExitCode.OK


@audit.command("head")
@FOLDER
@click.option("--sign", is_flag=True, help="Sign a checkpoint of the latest entry first.")
@debug_option
def head(folder: Path, sign: bool) -> ExitCode:
    """Print the latest signed checkpoint as N:DIGEST (stdout), to keep outside."""
    from pcxbatch.audit import AuditLog
    from pcxbatch.audit.log import latest_checkpoint

    log = AuditLog(folder)
    if not log.path.is_file():
        raise UnusableError(f"{folder}: no audit log here (audit.jsonl)")
    if sign:
        log.checkpoint()
    entry = latest_checkpoint(log.path)
    if entry is None or entry.body is None:
        raise UnusableError(f"{log.path}: no signed checkpoint yet (pass --sign to make one)")
    cp = entry.body["checkpoint"]
    click.echo(f"{cp['count']}:{cp['head']}")
    click.echo(
        f"signed at {cp['time']} by key {cp['key']}; keep both outside the installation and"
        f" check later: pcxbatch audit verify {safe(str(folder))} --head {cp['count']}:{cp['head']}"
        f" --key {cp['key']}",
        err=True,
    )
    return ExitCode.OK


@audit.command("verify")
@click.argument("target", type=click.Path(path_type=Path), default="reports", required=False)
@click.option("--head", "head_text", metavar="N:DIGEST", help="The head you kept (audit head).")
@click.option("--key", "key_fp", metavar="FINGERPRINT", help="The key fingerprint you kept.")
@debug_option
def verify(target: Path, head_text: str | None, key_fp: str | None) -> ExitCode:
    """Check a report folder's audit log (or an evidence pack, PACK.zip).

    Checks every entry's digest and link, every checkpoint's signature, and that each run's
    journal and report files are the ones its last entry recorded; names the first entry that
    is wrong. Exit 0 when verified, 7 when not.
    """
    from pcxbatch.audit.verify import parse_head

    try:
        expected = parse_head(head_text) if head_text else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--head") from None
    if target.suffix.lower() == ".zip":
        if not target.is_file():
            raise UnusableError(f"{target}: no such evidence pack")
        from pcxbatch.audit.pack import verify_pack

        verdict = verify_pack(target, key=key_fp, head=expected)
    else:
        from pcxbatch.audit.folder import verify_folder

        verdict = verify_folder(target, head=expected, key=key_fp)
    for note in verdict.notes:
        click.echo(f"note: {safe(note)}", err=True)
    if verdict.unwitnessed:
        click.echo(
            f"note: the last {verdict.unwitnessed} entries are not yet witnessed by a signed"
            " checkpoint (pcxbatch audit head --sign makes one)",
            err=True,
        )
    if not verdict.ok:
        click.echo(f"NOT VERIFIED: {len(verdict.problems)} problem(s), the first one first:")
        for problem in verdict.problems:
            click.echo(f"  - {safe(problem)}")
        return ExitCode.NOT_VERIFIED
    signed = (
        f"entries 1-{verdict.witnessed} witnessed by a signed checkpoint (key {verdict.keys[-1]})"
        if verdict.keys
        else "no signed checkpoint yet"
    )
    click.echo(
        f"verified: {verdict.entries} entries ({verdict.checkpoints} checkpoint(s)); {signed};"
        f" {len(verdict.files)} report file(s) and {len(verdict.journals)} journal(s) as recorded"
    )
    return ExitCode.OK


@audit.command("export")
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Where to write the pack (default: evidence-RUN.zip in the working folder).",
)
@click.option("--with-input", is_flag=True, help="Put the input file itself in the pack.")
@debug_option
def export(run_dir: Path, out: Path | None, with_input: bool) -> ExitCode:
    """Write one run's evidence pack (a zip an auditor checks with audit verify PACK --key)."""
    from pcxbatch.audit.evidence import export_run
    from pcxbatch.audit.runs import cli_actor
    from pcxbatch.plan import operator

    out = out or Path(f"evidence-{run_dir.resolve().name}.zip")
    written = export_run(run_dir, out, cli_actor(operator()), with_input=with_input)
    click.echo(f"evidence pack: {safe(str(written))}")
    return ExitCode.OK
