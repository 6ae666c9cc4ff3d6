"""`simulate`: replay recorded flows against NetworkPolicies and report what would break.

Thin: parse options, run the pipeline, hand the result to the output writers. Heavy
imports happen inside main() so that `simulate --help` starts fast."""

from __future__ import annotations

import os
import sys

import click

EXIT_OK, EXIT_BREAK, EXIT_INPUT = 0, 1, 2


class _Command(click.Command):
    """Usage errors become one line and exit code 2, like input errors."""

    def main(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        kwargs.setdefault("standalone_mode", True)
        try:
            return super().main(*args, **{**kwargs, "standalone_mode": False})
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("simulate: aborted", err=True)
            sys.exit(EXIT_INPUT)
        except click.ClickException as e:
            click.echo(f"simulate: error: {e.format_message()}", err=True)
            sys.exit(EXIT_INPUT)


@click.command(cls=_Command, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--flows", "flows", multiple=True, required=True, metavar="PATH",
              help="Flow records: file, directory or glob (repeatable), '-' for standard "
                   "input. AWS VPC flow logs (Parquet; S3 text .log/.log.gz; CloudWatch Logs "
                   "JSON), Hubble flows, or the normalized flow table (Parquet/CSV).")
@click.option("--flows-format", metavar="NAME",
              help="Force the flow format instead of detecting it from the content.")
@click.option("--vpc-fields", metavar="FIELDS",
              help="Field list of AWS VPC flow log text records that have no header line "
                   "(custom format; also CloudWatch Logs events), e.g. \"version srcaddr "
                   "dstaddr ...\". Default: the v2 format. A file's header line wins.")
@click.option("--cluster", multiple=True, metavar="PATH",
              help="kubectl get pods,namespaces,nodes,services,endpointslices -A -o json|yaml "
                   "output: file or directory (repeatable).")
@click.option("--policies", multiple=True, required=True, metavar="DIR",
              help="Candidate NetworkPolicy manifests (repeatable; the set is the union).")
@click.option("--baseline", multiple=True, metavar="DIR",
              help="Current NetworkPolicy manifests. Without it the baseline is the "
                   "verdict observed in the flows.")
@click.option("--pod-cidr", "pod_cidrs", multiple=True, metavar="CIDR",
              help="Pod address range (repeatable), besides the nodes' podCIDRs: addresses "
                   "inside it that match no pod are reported as unresolved.")
@click.option("--out", "out", metavar="FILE",
              help="Write the connections table (.parquet, .csv or .jsonl).")
@click.option("--save-flows", metavar="FILE.parquet",
              help="Also write the ingested records in the normalized flow schema, to "
                   "replay them later without parsing the sources again.")
@click.option("--json", "json_out", metavar="FILE",
              help="Write the summary and connections as JSON.")
@click.option("--report", "report_out", metavar="FILE.html",
              help="Write the impact report: one self-contained HTML file.")
@click.option("--markdown", "markdown_out", metavar="FILE",
              help="Write a compact GitHub-flavoured Markdown summary (for a pull-request "
                   "comment; under 60,000 characters).")
@click.option("--fail-on-break", is_flag=True,
              help="Gate: exit with code 1 when any connection would break.")
@click.option("--max-breaks", type=click.IntRange(min=0), metavar="N",
              help="Gate: exit with code 1 when more than N connections would break.")
@click.option("--fail-on-unresolved", is_flag=True,
              help="Gate: exit with code 1 when any connection has an unresolved endpoint.")
@click.option("--fail-on-disagreement", is_flag=True,
              help="Gate: exit with code 1 when the baseline policies disagree with a "
                   "verdict the flows recorded (self-calibration).")
@click.option("--memory-limit", default="1500MB", show_default=True,
              help="DuckDB memory limit; larger inputs spill to --temp-dir.")
@click.option("--temp-dir", metavar="DIR", help="Where DuckDB spills (default: a new "
                                                "directory under the system temp dir).")
@click.option("--threads", type=int, help="DuckDB threads (default: all cores).")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
def main(flows: tuple[str, ...], flows_format: str | None, vpc_fields: str | None,
         cluster: tuple[str, ...], policies: tuple[str, ...], baseline: tuple[str, ...],
         pod_cidrs: tuple[str, ...], out: str | None, save_flows: str | None,
         json_out: str | None, report_out: str | None, markdown_out: str | None,
         fail_on_break: bool, max_breaks: int | None, fail_on_unresolved: bool,
         fail_on_disagreement: bool, memory_limit: str,
         temp_dir: str | None, threads: int | None, quiet: bool) -> None:
    """Replay recorded traffic against NetworkPolicies and report which connections the
    candidate policies would break, which they would newly allow, and why.

    Exit codes: 0 success; 1 a gate tripped (--fail-on-break, --max-breaks,
    --fail-on-unresolved, --fail-on-disagreement); 2 bad usage or input.
    """
    from .errors import SimulatorError
    from .manifests import start_reading

    pending = None
    try:
        # the manifests are parsed in worker processes while DuckDB and Arrow are imported
        pending = start_reading(policies, list(baseline) or None, cluster)
        from .gates import tripped
        from .output.table import check_extension, write_connections
        from .output.terminal import render
        from .pipeline import Options, run
        from .progress import Progress
        from .report.outputs import check_report_paths, write_reports

        opts = Options(flows=list(flows), policies=list(policies), cluster=list(cluster),
                       baseline=list(baseline), pod_cidrs=list(pod_cidrs),
                       flows_format=flows_format, vpc_fields=vpc_fields,
                       save_flows=save_flows, memory_limit=memory_limit, temp_dir=temp_dir,
                       threads=threads, quiet=quiet)
        if out:
            check_extension(out)
        check_report_paths(report_out, markdown_out)
        result = run(opts, pending)
        try:
            if out:
                with Progress(not quiet).phase("writing the connections table"):
                    write_connections(result.con, out)
            if json_out or report_out or markdown_out:
                with Progress(not quiet).phase("writing reports"):
                    write_reports(result, html=report_out, markdown=markdown_out,
                                  json=json_out)
            summary = result.summary
        finally:
            result.close(fast=_EXITING)
    except SimulatorError as e:
        click.echo(f"simulate: error: {e}", err=True)
        sys.exit(e.exit_code)
    except OSError as e:
        click.echo(f"simulate: error: {e.filename or ''}: {e.strerror or e}", err=True)
        sys.exit(EXIT_INPUT)
    except Exception as e:
        duckdb = sys.modules.get("duckdb")
        if duckdb is None or not isinstance(e, duckdb.Error):
            raise
        click.echo(f"simulate: error: {str(e).splitlines()[0]}", err=True)
        sys.exit(EXIT_INPUT)
    finally:
        if pending is not None:
            pending.close()
    if not quiet:
        click.echo(render(summary))
        for what, path in (("Report", report_out), ("Markdown", markdown_out),
                           ("JSON", json_out), ("Connections", out)):
            if path:
                click.echo(f"{what}: {path}")
    reasons = tripped(summary, fail_on_break=fail_on_break, max_breaks=max_breaks,
                      fail_on_unresolved=fail_on_unresolved,
                      fail_on_disagreement=fail_on_disagreement)
    for reason in reasons:
        click.echo(f"simulate: gate {reason}", err=True)
    if reasons:
        sys.exit(EXIT_BREAK)


# Set by entry(): the process ends right after main(), so the run's state is left to the OS.
_EXITING = False


def entry() -> None:
    """The `simulate` command. It leaves the process without tearing down what the run
    built (DuckDB's tables, the manifests' objects), which the OS frees at once; that
    teardown took 0.15 s at 10M flows."""
    global _EXITING
    _EXITING = True
    code: int = 0
    try:
        main()
    except SystemExit as e:
        if isinstance(e.code, str):
            sys.stderr.write(e.code + "\n")
            code = 1
        else:
            code = e.code or 0
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):  # a closed pipe (| head) or stream
            pass
    os._exit(code)


if __name__ == "__main__":
    entry()
