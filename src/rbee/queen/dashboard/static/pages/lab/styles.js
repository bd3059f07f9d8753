// The playground's and scheduler's own styles, in a file of their own (the page's CSP allows
// only same-origin style sheets, never inline styles); linked once, on first use.
export function useStyles() {
  if (document.querySelector("link[data-lab-styles]")) return;
  const link = document.createElement("link");
  link.rel = "stylesheet";
  link.href = "/ui/static/pages/lab/lab.css";
  link.dataset.labStyles = "";
  document.head.appendChild(link);
}
