// uPlot line chart, loaded on first use (keeps uPlot out of the initial JS).
import {createEffect, onCleanup, onMount} from 'solid-js';
import type uPlot from 'uplot';

export interface Series {
  label: string;
  values: (number | null)[];
  color: string;
}

export function LineChart(props: {x: number[]; series: Series[]; height?: number; label: string; timeAxis?: boolean}) {
  let el!: HTMLDivElement;
  let plot: uPlot | null = null;
  let lib: typeof uPlot | null = null;
  const draw = () => {
    if (!lib) return;
    const data = [props.x, ...props.series.map((s) => s.values)] as uPlot.AlignedData;
    if (plot && plot.series.length === props.series.length + 1) {
      plot.setData(data);
      return;
    }
    plot?.destroy();
    plot = new lib(
      {
        width: Math.max(280, el.clientWidth),
        height: props.height ?? 220,
        scales: {x: {time: props.timeAxis !== false}},
        series: [{}, ...props.series.map((s) => ({label: s.label, stroke: s.color, width: 2, spanGaps: true}))],
        axes: [{}, {size: 60}],
        legend: {show: true},
      },
      data,
      el,
    );
  };
  onMount(async () => {
    const [m] = await Promise.all([import('uplot'), import('uplot/dist/uPlot.min.css')]);
    lib = m.default;
    draw();
    const ro = new ResizeObserver(() => plot?.setSize({width: Math.max(280, el.clientWidth), height: props.height ?? 220}));
    ro.observe(el);
    onCleanup(() => ro.disconnect());
  });
  createEffect(() => {
    props.x;
    props.series.map((s) => s.values);
    draw();
  });
  onCleanup(() => plot?.destroy());
  return <div class="chart" ref={el} role="img" aria-label={props.label} />;
}
