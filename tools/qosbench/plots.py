"""PNGs next to the CSVs (matplotlib, no display): weighted-token share vs quota share over time
per user, TTFT CDF per group, queue depth per group over time; QoS and FCFS side by side."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MODE_TITLE = {"qos": "QoS", "fcfs": "FCFS"}


def _phase_lines(ax, run):
    for name, ph in run["phases"].items():
        ax.axvline(ph["start"], color="#999", lw=0.8, ls=":")
        ax.text(ph["start"], 1.0, f" {name}", transform=ax.get_xaxis_transform(), fontsize=7, va="top", color="#555")
    for t, _ in run.get("reloads", []):
        ax.axvline(t, color="#cf222e", lw=1, ls="--")
        ax.text(t, 0.92, " reload", transform=ax.get_xaxis_transform(), fontsize=7, va="top", color="#cf222e")


def shares(path, runs, phase, title, window_s):
    """runs: {mode: run}; one panel per mode; a line per user (share per window), its quota dashed."""
    fig, axes = plt.subplots(1, len(runs), figsize=(6.5 * len(runs), 4), sharey=True, squeeze=False)
    for ax, (mode, run) in zip(axes[0], runs.items()):
        windows = run.get("share_windows", {}).get(phase, [])
        users = sorted({w[4] for w in windows})
        many = len(users) > 12
        for i, user in enumerate(users):
            pts = sorted((w[0], w[1], w[5], w[6]) for w in windows if w[4] == user)
            color = f"C{i % 10}"
            xs = [x for a, b, _, _ in pts for x in (a, b)]
            ax.plot(xs, [100 * s for _, _, s, _ in pts for _ in (0, 1)], color=color, lw=1.2 if not many else 0.6,
                    label=None if many else user)
            ax.plot(xs, [100 * q for _, _, _, q in pts for _ in (0, 1)], color=color, lw=1, ls="--")
        ax.set_title(f"{MODE_TITLE[mode]}: share of the group's weighted tokens per {window_s:g} s window", fontsize=9)
        ax.set_xlabel("seconds since the run began")
        ax.grid(alpha=0.3)
        _phase_lines(ax, run)
        if users and not many:
            ax.legend(fontsize=7, loc="best")
    axes[0][0].set_ylabel("% (solid: served, dashed: quota)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _color(group, order):
    return f"C{order.index(group) % 10}" if group in order else "C9"


def ttft_cdf(path, runs, phases, title, group_order):
    """One panel per phase; per group an empirical CDF of TTFT, QoS solid, FCFS dashed."""
    fig, axes = plt.subplots(1, len(phases), figsize=(5.5 * len(phases), 4), squeeze=False)
    for ax, phase in zip(axes[0], phases):
        groups = []
        for run in runs.values():
            for r in run["records"]:
                if r.phase == phase and r.group not in groups:
                    groups.append(r.group)
        for gi, g in enumerate(groups):
            for mode, run in runs.items():
                ph = run["phases"][phase]
                w0 = ph["start"] + ph["warmup"]
                v = sorted(r.first - r.sent for r in run["records"]
                           if r.phase == phase and r.group == g and r.first is not None and w0 <= r.sent <= ph["stop"])
                if not v:
                    continue
                ax.step(v, [(i + 1) / len(v) for i in range(len(v))], where="post", color=_color(g, group_order),
                        ls="-" if mode == "qos" else "--", label=f"{g} {MODE_TITLE[mode]}")
        ax.set_xscale("log")
        ax.set_xlabel("time to first token, s (log)")
        ax.set_ylabel("fraction of requests")
        ax.set_title(f"phase {phase}", fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def queue_depth(path, runs, title, group_order):
    """Top: the server's queue depth by its groups (under FCFS it has one queue). Bottom: requests
    sent and still without their first token, by the scenario's groups, the same in both modes."""
    fig, axes = plt.subplots(2, len(runs), figsize=(6.5 * len(runs), 6.4), sharey="row", squeeze=False)
    for col, (mode, run) in enumerate(runs.items()):
        ax = axes[0][col]
        names = []
        for _, usage in run["polls"]:
            for g in usage["groups"]:
                if g["name"] not in names:
                    names.append(g["name"])
        for name in names:
            pts = [(t, g["waiting"]) for t, usage in run["polls"] for g in usage["groups"] if g["name"] == name]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], color=_color(name, group_order), lw=1, label=name)
        ax.set_title(f"{MODE_TITLE[mode]}: requests waiting in the server's queue, by group", fontsize=9)
        ax.grid(alpha=0.3)
        _phase_lines(ax, run)
        ax.legend(fontsize=7, loc="upper right")
        ax = axes[1][col]
        times = [t for t, _ in run["polls"]]
        for g in [x for x in group_order if any(r.group == x for r in run["records"])]:
            recs = [r for r in run["records"] if r.group == g]
            ys = [sum(1 for r in recs if r.sent <= t and (r.first is None or r.first > t) and (r.done is None or r.done > t))
                  for t in times]
            ax.plot(times, ys, color=_color(g, group_order), lw=1, label=g)
        ax.set_title(f"{MODE_TITLE[mode]}: requests awaiting their first token (client side), by group", fontsize=9)
        ax.set_xlabel("seconds since the run began")
        ax.grid(alpha=0.3)
        _phase_lines(ax, run)
        ax.legend(fontsize=7, loc="upper right")
    axes[0][0].set_ylabel("waiting")
    axes[1][0].set_ylabel("awaiting first token")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
