"""Saved views for the Temporal Web UI (README lists them; tests run each query on the dev
server so a typo cannot ship). Open one at `<ui>/namespaces/<ns>/workflows?query=<query>`,
then "Save as View" in the UI keeps it in the sidebar."""

from __future__ import annotations

from urllib.parse import quote

SAVED_VIEWS: dict[str, str] = {
    "Live calls": "WorkflowType = 'CallWorkflow' AND ExecutionStatus = 'Running'",
    "Failed recordings": "WorkflowType = 'RecordingWorkflow' AND RecordingStatus = 'failed'",
    "Calls with alerts": "WorkflowType = 'CallWorkflow' AND SilenceAlerts > 0",
}


def view_url(ui_base: str, namespace: str, query: str) -> str:
    return f"{ui_base.rstrip('/')}/namespaces/{namespace}/workflows?query={quote(query)}"
