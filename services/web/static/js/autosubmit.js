// The member's sign-in link opens a page with the code in a form: submit it at once, so the code leaves the
// address bar (and the history entry) and travels in a POST body instead.
const form = document.getElementById("member-sign-in");
if (form && form.dataset.autosubmit === "yes") {
  history.replaceState(null, "", "/member/sign-in");
  form.submit();
}
