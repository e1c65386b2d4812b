"""The reward curve of a GRPO run: per-step points from its metric rows, drawn as a PNG with PIL."""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT, MARGIN = 720, 420, 60
LINE_COLOURS = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14))
TOTAL_COLOUR = (0, 0, 0)
SMOOTHED_COLOUR = (230, 85, 13)
SMOOTH_FROM_POINTS = 8


def reward_curve(rows: list[dict]) -> list[dict]:
    """Step, weighted reward (mean and std) and each reward's mean and std, one point per metrics row."""
    return [
        {"step": row["step"], "reward": row["reward"], "reward_std": row.get("reward_std"),
         **{key: value for key, value in row.items() if key.startswith("rewards/")}}
        for row in rows
        if "reward" in row
    ]


def moving_mean(line: list[tuple[int, float]], window: int) -> list[tuple[int, float]]:
    """Each point's value replaced by the mean of it and up to window - 1 points before it."""
    values = [value for _, value in line]
    means = [sum(values[max(0, i - window + 1) : i + 1]) / min(window, i + 1) for i in range(len(values))]
    return [(step, mean) for (step, _), mean in zip(line, means, strict=True)]


def _series(curve: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """Lines to draw: the weighted reward, each reward's mean when there are several, a moving mean when long."""
    names = sorted({key for point in curve for key in point if key.startswith("rewards/") and key.endswith("/mean")})
    series = {"reward": [(point["step"], point["reward"]) for point in curve]}
    if len(names) > 1:
        for name in names:
            series[name[len("rewards/") : -len("/mean")]] = [(p["step"], p[name]) for p in curve if name in p]
    if len(curve) >= SMOOTH_FROM_POINTS:
        window = max(3, len(curve) // 8)
        series[f"reward, mean of {window}"] = moving_mean(series["reward"], window)
    return series


def draw_reward_curve(curve: list[dict], title: str = "GRPO reward per step") -> Image.Image:
    """A line chart of the curve with labelled axes and a legend."""
    if not curve:
        raise ValueError("a reward curve needs at least one point")
    series = _series(curve)
    steps = [step for line in series.values() for step, _ in line]
    values = [value for line in series.values() for _, value in line]
    x0, x1 = min(steps), max(max(steps), min(steps) + 1)
    y0, y1 = min(values), max(values)
    pad = (y1 - y0) * 0.05 or 0.05
    y0, y1 = y0 - pad, y1 + pad

    def to_px(step: float, value: float) -> tuple[float, float]:
        return (MARGIN + (step - x0) / (x1 - x0) * (WIDTH - 2 * MARGIN),
                HEIGHT - MARGIN - (value - y0) / (y1 - y0) * (HEIGHT - 2 * MARGIN))

    image = Image.new("RGB", (WIDTH, HEIGHT), (255, 255, 255))
    draw, font = ImageDraw.Draw(image), ImageFont.load_default()
    draw.rectangle((MARGIN, MARGIN, WIDTH - MARGIN, HEIGHT - MARGIN), outline=(0, 0, 0))
    for i in range(5):
        value, step = y0 + (y1 - y0) * i / 4, x0 + (x1 - x0) * i / 4
        _, y = to_px(x0, value)
        x, _ = to_px(step, y0)
        draw.line((MARGIN - 4, y, MARGIN, y), fill=(0, 0, 0))
        draw.text((4, y - 6), f"{value:.3f}", fill=(0, 0, 0), font=font)
        draw.line((x, HEIGHT - MARGIN, x, HEIGHT - MARGIN + 4), fill=(0, 0, 0))
        draw.text((x - 10, HEIGHT - MARGIN + 8), f"{step:g}", fill=(0, 0, 0), font=font)
    draw.text((WIDTH // 2 - 20, HEIGHT - 24), "step", fill=(0, 0, 0), font=font)
    draw.text((MARGIN, 20), title, fill=(0, 0, 0), font=font)
    for index, (name, line) in enumerate(series.items()):
        colour = (TOTAL_COLOUR if name == "reward" else SMOOTHED_COLOUR if name.startswith("reward, mean")
                  else LINE_COLOURS[(index - 1) % len(LINE_COLOURS)])
        points = [to_px(step, value) for step, value in line]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        for x, y in points if len(points) == 1 else ():
            draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=colour)
        label_y = MARGIN + 6 + 14 * index
        draw.line((WIDTH - MARGIN - 150, label_y + 6, WIDTH - MARGIN - 130, label_y + 6), fill=colour, width=2)
        draw.text((WIDTH - MARGIN - 125, label_y), name, fill=colour, font=font)
    return image

