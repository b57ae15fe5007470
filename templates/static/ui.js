// Progressive enhancement only: every page works without this file.
// 1. The compose form refreshes its per-channel preview as the text is typed.
// 2. An item page polls its delivery counts while fan-out runs.
(function () {
  "use strict";

  var form = document.getElementById("compose");
  var box = document.getElementById("previews");
  if (form && box && form.dataset.previewUrl) {
    var timer = null;
    var seq = 0;
    var refresh = function () {
      var data = new FormData(form);
      data.delete("attachments");
      var mine = ++seq;
      fetch(form.dataset.previewUrl, {
        method: "POST",
        body: data,
        credentials: "same-origin",
        headers: { "X-CSRF-Token": data.get("csrf_token") || "" }
      }).then(function (resp) {
        if (resp.redirected) { return null; }  // the session ended: leave the page as it is
        return resp.text();
      }).then(function (html) {
        if (html !== null && mine === seq) { box.innerHTML = html; }
      }).catch(function () {});
    };
    var later = function () {
      clearTimeout(timer);
      timer = setTimeout(refresh, 400);
    };
    form.addEventListener("input", later);
    form.addEventListener("change", later);
    refresh();
  }

  var section = document.getElementById("deliveries");
  if (section && section.dataset.poll && section.dataset.progressUrl) {
    var poll = function () {
      fetch(section.dataset.progressUrl, { credentials: "same-origin" })
        .then(function (resp) { return resp.ok ? resp.json() : null; })
        .then(function (data) {
          if (!data) { return; }
          if (data.total === 0) { setTimeout(poll, 2000); return; }  // not planned yet
          var known = true;
          data.channels.forEach(function (ch) {
            var row = section.querySelector('tr[data-channel="' + ch.channel + '"]');
            if (!row) { known = false; return; }
            var bar = row.querySelector("progress");
            bar.max = ch.total;
            bar.value = ch.done;
            row.querySelector("[data-percent]").textContent = ch.percent + "%";
            var parts = [];
            Object.keys(ch.states).forEach(function (s) {
              parts.push(ch.state_labels[s] + " " + ch.states[s]);
            });
            row.querySelector("[data-states]").textContent = parts.join(" · ");
          });
          if (!known || data.settled) { window.location.reload(); return; }
          setTimeout(poll, 2000);
        })
        .catch(function () { setTimeout(poll, 5000); });
    };
    setTimeout(poll, 1000);
  }
})();
