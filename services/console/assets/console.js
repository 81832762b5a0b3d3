// opsledger console: behaviour attached from this file only (the pages'
// Content-Security-Policy allows no inline script).
//
// Keys: on a list, j / k move and Enter opens the row; a acknowledges (the
// focused row of a queue, or the incident a page shows); ? lists the keys.
document.addEventListener("keydown", (e) => {
  if (e.target.closest("input, textarea, select, button") || e.ctrlKey || e.metaKey || e.altKey) return;
  if (e.key === "?") {
    const keys = document.getElementById("keys");
    if (keys && !keys.open) keys.showModal();
    e.preventDefault();
    return;
  }
  const rows = Array.from(document.querySelectorAll("[data-list] tbody tr[tabindex]"));
  const at = rows.indexOf(document.activeElement);
  if (e.key === "j" && rows.length) rows[Math.min(at + 1, rows.length - 1)].focus();
  else if (e.key === "k" && rows.length) rows[Math.max(at - 1, 0)].focus();
  else if (e.key === "Enter" && at >= 0) {
    const link = rows[at].querySelector("a[href]");
    if (link) link.click();
  } else if (e.key === "a") {
    const box = at >= 0 ? rows[at].querySelector("input[name=ids]") : null;
    const bulk = document.getElementById("bulk");
    if (box && bulk) {
      box.checked = true;
      bulk.requestSubmit();
    } else {
      const button = document.querySelector("[data-key=a]");
      if (button) button.click();
    }
  }
});

// A live list's rows are swapped whole when the queue changes: the boxes
// ticked and the row in focus are kept across the swap, so an operator
// ticking incidents in an alert storm loses nothing to a new arrival.
let kept = null;
const remember = () => {
  kept = {
    ticked: Array.from(document.querySelectorAll("input[name=ids]:checked")).map((b) => b.value),
    focused: document.activeElement && document.activeElement.closest("tr[data-id]")
      ? document.activeElement.closest("tr[data-id]").dataset.id
      : null,
  };
};
const restore = () => {
  if (!kept) return;
  for (const box of document.querySelectorAll("input[name=ids]")) {
    if (kept.ticked.includes(box.value)) box.checked = true;
  }
  if (kept.focused) {
    const row = Array.from(document.querySelectorAll("tr[data-id]")).find((r) => r.dataset.id === kept.focused);
    if (row) row.focus();
  }
  kept = null;
};
document.addEventListener("htmx:sseBeforeMessage", remember);
document.addEventListener("htmx:sseMessage", restore);
