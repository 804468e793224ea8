/** The activity timeline: every status, recording, supervisor and alert event, newest first. */

import type { CallEvent } from "../../shared/api";
import { h } from "../../shared/dom";
import { formatClock } from "../../shared/format";
import { panelSection } from "./context";

export class ActivityPanel {
  readonly element: HTMLElement;
  private readonly list = h("ol", { class: "timeline", id: "timeline" });

  constructor() {
    this.element = panelSection("Activity", this.list);
  }

  add(event: CallEvent, tone: string, text: string): void {
    this.list.prepend(h("li", { class: `tl tl-${tone}` }, h("time", {}, formatClock(event.at)), h("span", {}, text)));
  }
}
