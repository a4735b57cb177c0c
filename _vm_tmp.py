import sys, time, shutil, json, pathlib
from research import config as config_lib
from research.sweep import expand, axis
from research.train.loop import train_and_evaluate
from research.train import vmap
c = config_lib.load("experiments/digits_lenet.py"); c.unlock()
config_lib.apply_overrides(c, {"train.num_epochs": 2}); c.lock()
points = expand(c, axis("optimizer.learning_rate", [1e-3, 2e-3, 3e-3, 1e-2]))
root = pathlib.Path("/tmp/vml"); shutil.rmtree(root, ignore_errors=True)
t = time.time()
s = vmap.train_group(points, [root / "v" / p.name for p in points], root / "group")
print("vmap", time.time() - t, s[0]["compile_time_s"], s[0]["examples_per_sec"])
t = time.time()
for p in points:
    s = train_and_evaluate(p.config, root / "s" / p.name)
    print("sep", s["compile_time_s"], s["examples_per_sec"], s["wall_time_s"])
print("separate", time.time() - t)
