"""Report component: the run's page (scores, image grids, reward curve, timings, serving check) from its journal."""

from kfp.dsl import HTML, Output

from pipelines.components.base import on_base_image
from pipelines.components.stage_support import backend_store, platform_config, progress


@on_base_image(platform_config, backend_store, progress)
def report(backend: str, root: str, page: Output[HTML]) -> str:
    """Write report.html and report.json under `<root>/report`; the page is also this step's HTML output."""
    from simplear.report.writer import REPORT_HTML, write_report
    from simplear.store import join

    store = backend_store(backend)
    folder = write_report(store, root)
    with open(page.path, "wb") as html:
        html.write(store.read(join(folder, REPORT_HTML)))
    page.metadata["uri"] = folder
    progress(f"report: {join(folder, REPORT_HTML)}")
    return folder
