"""The row under the tabs: the JSON, CSV and PNG downloads, and the share link."""

from __future__ import annotations

from typing import Any

import gradio as gr


def build(outputs: dict[str, Any]) -> dict[str, Any]:
    """The downloads go into `outputs` (analyze outputs); returns the PNG button, the share button and its
    link box. The PNG files are made when asked for: drawing every figure costs seconds."""
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=240):
            gr.Markdown("**Downloads**")
            outputs["export:json"] = gr.DownloadButton("Full result (JSON)", size="md", elem_id="download-json")
            outputs["export:csv"] = gr.DownloadButton("Scores table (CSV)", size="md", elem_id="download-csv")
        with gr.Column(scale=2):
            png_button = gr.Button("Make PNG files of every figure", size="md", elem_id="download-png-button")
            outputs["export:png"] = gr.File(label="Figures (PNG)", file_count="multiple", height=150,
                                            interactive=False, elem_id="download-png")
        with gr.Column(scale=2, min_width=320):
            gr.Markdown("**Share**")
            share_button = gr.Button("Copy a link to this prompt and settings", size="md", elem_id="share-button")
            share_url = gr.Textbox(show_label=False, buttons=["copy"], interactive=False, max_lines=1,
                                   placeholder="the link appears here", elem_id="share-url")
    return {"png_button": png_button, "share_button": share_button, "share_url": share_url}
