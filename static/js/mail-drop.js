// Record pages: a file dropped on the "Track an email file" card is put into its file input
// and the form is sent (the server checks the CSRF token, type and size).
document.addEventListener("DOMContentLoaded", () => {
  for (const zone of document.querySelectorAll("[data-mail-drop]")) {
    const form = zone.querySelector("form");
    const input = form.querySelector("input[type=file]");
    zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("dragging"); });
    zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      zone.classList.remove("dragging");
      if (!event.dataTransfer || !event.dataTransfer.files.length) return;
      input.files = event.dataTransfer.files;
      form.requestSubmit();
    });
  }
});
