// opsledger console: behaviour attached from this file only (the pages'
// Content-Security-Policy allows no inline script).
//
// Keys on a list: j / k move, Enter opens.
document.addEventListener("keydown", (e) => {
  if (e.target.closest("input, textarea, select")) return;
  const rows = Array.from(document.querySelectorAll("[data-list] tbody tr"));
  if (rows.length === 0) return;
  const at = rows.indexOf(document.activeElement);
  if (e.key === "j") rows[Math.min(at + 1, rows.length - 1)].focus();
  else if (e.key === "k") rows[Math.max(at - 1, 0)].focus();
  else if (e.key === "Enter" && at >= 0) {
    const link = rows[at].querySelector("a[href]");
    if (link) link.click();
  }
});
