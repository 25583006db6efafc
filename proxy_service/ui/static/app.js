// b23-llm-proxy dashboard: draws the charts from their data-chart attribute (JSON written by
// the server) with the vendored uPlot, and copies a new secret. No inline script, no eval,
// no innerHTML: text reaches the page only through textContent and uPlot's own DOM calls.
"use strict";

(function () {
  function cssVar(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  // Tick labels with as many decimals as the step between ticks needs: spend per day is often
  // a fraction of a cent, which uPlot's default labels would all print as "0".
  function tickValues(u, splits) {
    var step = splits.length > 1 ? Math.abs(splits[1] - splits[0]) : 1;
    var decimals = 0;
    while (decimals < 12) {
      var scaled = step * Math.pow(10, decimals);
      if (Math.abs(scaled - Math.round(scaled)) < 1e-6 * Math.max(1, scaled)) break;
      decimals++;
    }
    return splits.map(function (value) {
      return value == null ? "" : value.toLocaleString("en-US", {
        minimumFractionDigits: decimals,
        maximumFractionDigits: decimals,
      });
    });
  }

  // The y axis as wide as its longest label (a fixed width cut "0.00010" off at the left).
  function axisSize(u, values, axisIndex, cycle) {
    var axis = u.axes[axisIndex];
    if (cycle > 1) {
      return axis._size;
    }
    var longest = (values || []).reduce(function (found, value) {
      return value.length > found.length ? value : found;
    }, "");
    var size = axis.ticks.size + axis.gap;
    if (longest) {
      u.ctx.font = axis.font[0];
      size += u.ctx.measureText(longest).width / window.devicePixelRatio;
    }
    return Math.ceil(size) + 4;
  }

  function fromZero(u, min, max) {
    return uPlot.rangeNum(0, max > 0 ? max : 1, 0.1, true);
  }

  // One day of data (a one-day report): that day in the middle, not at the left of 3 years.
  function xScale(x) {
    if (x.length !== 1) {
      return { time: true };
    }
    return { time: true, range: function () { return [x[0] - 43200, x[0] + 43200]; } };
  }

  function draw(element) {
    var data;
    try {
      data = JSON.parse(element.getAttribute("data-chart"));
    } catch (error) {
      return;
    }
    if (!data || !data.x || data.x.length === 0 || typeof uPlot === "undefined") {
      return;
    }
    var stacked = data.series.length > 1;
    var columns = [data.x];
    var sums = data.x.map(function () { return 0; });
    var series = [{}];
    data.series.forEach(function (item, index) {
      var values = item.values.map(function (value, at) {
        sums[at] += value;
        return stacked ? sums[at] : value;
      });
      columns.push(values);
      var colour = cssVar("--chart-" + ((index % 5) + 1));
      series.push({ label: item.label, stroke: colour, width: 2, fill: stacked ? colour + "33" : undefined });
    });
    if (stacked) {
      // Stacked: the last (top) band first, so each band's fill sits over the one below.
      columns = [columns[0]].concat(columns.slice(1).reverse());
      series = [series[0]].concat(series.slice(1).reverse());
    }
    var axis = { stroke: cssVar("--muted"), grid: { stroke: cssVar("--line"), width: 1 }, ticks: { stroke: cssVar("--line") } };
    var width = Math.max(200, element.clientWidth);
    var chart = new uPlot({
      width: width,
      height: 220,
      series: series,
      axes: [axis, Object.assign({ size: axisSize, values: tickValues }, axis)],
      scales: { x: xScale(data.x), y: { range: fromZero } },
      legend: { live: false },
    }, columns, element);
    window.addEventListener("resize", function () {
      chart.setSize({ width: Math.max(200, element.clientWidth), height: 220 });
    });
  }

  // A table wider than the screen scrolls inside its .scroll wrapper: while it does, the
  // wrapper takes the keyboard focus (so arrow keys scroll it) and is named after its table.
  function markScrollable() {
    document.querySelectorAll(".scroll").forEach(function (wrapper) {
      if (wrapper.scrollWidth > wrapper.clientWidth) {
        var caption = wrapper.querySelector("caption");
        wrapper.setAttribute("tabindex", "0");
        wrapper.setAttribute("role", "region");
        wrapper.setAttribute("aria-label", (caption ? caption.textContent.trim() + ": " : "") + "table, scrolls sideways");
      } else if (wrapper.hasAttribute("tabindex")) {
        wrapper.removeAttribute("tabindex");
        wrapper.removeAttribute("role");
        wrapper.removeAttribute("aria-label");
      }
    });
  }

  function copy(button) {
    var target = document.getElementById(button.getAttribute("data-copy"));
    if (!target || !navigator.clipboard) {
      return;
    }
    navigator.clipboard.writeText(target.textContent).then(function () {
      button.textContent = "Copied";
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var insecure = document.getElementById("insecure-warning");
    if (insecure && !window.isSecureContext) {
      insecure.hidden = false;
    }
    document.querySelectorAll(".chart[data-chart]").forEach(draw);
    markScrollable();
    window.addEventListener("resize", markScrollable);
    document.addEventListener("toggle", markScrollable, true); // a <details> opened or closed
    document.querySelectorAll("button.copy[data-copy]").forEach(function (button) {
      button.addEventListener("click", function () { copy(button); });
    });
  });
})();
