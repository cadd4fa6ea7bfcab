"""The page's accessibility rules, after ``app.layout``'s CSS: a focus mark on every control, and
results that are never shown faded."""

CSS = """
/* a focus mark on every control (WCAG 2.4.7): vermillion, 3.9:1 on white; a radio or a checkbox
   rings its whole label, so the mark is not hidden under the small circle */
.gradio-container :is(a, button, input, select, textarea, summary, [tabindex]):not([type=radio], [type=checkbox]):focus-visible,
.gradio-container label:has(input:is([type=radio], [type=checkbox]):focus-visible) {
  outline: 3px solid #D55E00 !important; outline-offset: 2px !important; }

/* gradio dims an output while its event runs and lifts the dimming a moment after the new value is
   in: the batch's and the comparison's results are never shown faded (2.9:1 text) */
#batch-summary .pending, #batch-hist .pending, #batch-table .pending, #compare-out .pending { opacity: 1 !important; }
"""
