"""Random changes to a tree of nested directories (files written, appended, truncated,
renamed across directories; directories made, removed and moved with what they hold),
with listings, reads, the flusher and a slow store all running at once. Each listing and
read must agree with the model at once, the store must end as the tree is, and a second
mount must read it all back. (It found a rename's listing merged after the deletes that
landed during it were forgotten: a removed file came back in the listing.)"""

from __future__ import annotations

import os
import random

import pytest
import trio

from .conftest import Env, ino_of, listdir, read_path, slow_store

pytestmark = pytest.mark.trio


@pytest.mark.parametrize("seed", range(6))
async def test_random_tree_changes_with_listings_and_the_flusher_running(env: Env, seed: int) -> None:
    rng = random.Random(seed)
    slow_store(env, ("put", "copy", "delete_many", "list"), -seed - 1, 0.01)

    # the model: path -> bytes for files, path -> None for directories
    model: dict[str, bytes | None] = {"": None}

    def dirs() -> list[str]:
        return sorted(p for p, v in model.items() if v is None)

    def files() -> list[str]:
        return sorted(p for p, v in model.items() if v is not None)

    def join(parent: str, name: str) -> str:
        return f"{parent}/{name}" if parent else name

    log: list[str] = []
    async with env.mount(
        writeback_delay=rng.choice([0.0, 0.01, 0.05]), metadata_ttl=rng.choice([0.0, 60.0])
    ) as fs:
        for number in range(300):
            kind = rng.choice(
                [
                    "write",
                    "write",
                    "append",
                    "truncate",
                    "mkdir",
                    "rmdir",
                    "rename",
                    "rename",
                    "unlink",
                    "list",
                    "read",
                ]
            )
            log.append(f"{number} {kind}")
            if kind == "write":
                parent = rng.choice(dirs())
                path = join(parent, f"f{rng.randrange(3)}")
                if path in model and model[path] is None:
                    continue
                data = f"<{path}:{number}>".encode() * rng.randint(0, 40)
                pino = await ino_of(fs, parent)
                node = await fs.lookup(pino, path.rpartition("/")[2])
                if node is None:
                    fh, node = await fs.create(pino, path.rpartition("/")[2], 0o644, os.O_WRONLY, 1000, 1000)
                else:
                    fh, _ = await fs.open(node.ino, os.O_WRONLY | os.O_TRUNC)
                if data:
                    await fs.write(fh, 0, data)
                fs.release(fh)
                model[path] = data
                log[-1] += f" {path} {len(data)}"
            elif kind == "append" and files():
                path = rng.choice(files())
                more = f"[{number}]".encode() * rng.randint(1, 20)
                fh, _ = await fs.open(await ino_of(fs, path), os.O_WRONLY)
                old = model[path]
                assert old is not None
                await fs.write(fh, len(old), more)
                fs.release(fh)
                model[path] = old + more
                log[-1] += f" {path}"
            elif kind == "truncate" and files():
                path = rng.choice(files())
                old = model[path]
                assert old is not None
                size = rng.randrange(len(old) + 1)
                await fs.setattr(await ino_of(fs, path), size=size)
                model[path] = old[:size]
                log[-1] += f" {path} {size}"
            elif kind == "mkdir":
                parent = rng.choice(dirs())
                if parent.count("/") >= 2:
                    continue
                path = join(parent, f"d{rng.randrange(3)}")
                if path in model:
                    continue
                await fs.mkdir(
                    await ino_of(fs, parent), path.rpartition("/")[2], 0o755, fs.settings.uid, fs.settings.gid
                )
                model[path] = None
                log[-1] += f" {path}"
            elif kind == "rmdir":
                empty = [d for d in dirs() if d and not any(p.startswith(d + "/") for p in model)]
                if not empty:
                    continue
                path = rng.choice(empty)
                parent, _, name = path.rpartition("/")
                await fs.rmdir(await ino_of(fs, parent), name)
                del model[path]
                log[-1] += f" {path}"
            elif kind == "unlink" and files():
                path = rng.choice(files())
                parent, _, name = path.rpartition("/")
                await fs.unlink(await ino_of(fs, parent), name)
                del model[path]
                log[-1] += f" {path}"
            elif kind == "rename":
                if len(model) == 1:
                    continue
                source = rng.choice(sorted(p for p in model if p))
                target_parent = rng.choice(dirs())
                if target_parent == source or target_parent.startswith(source + "/"):
                    continue
                is_dir = model[source] is None
                target = join(target_parent, (f"d{rng.randrange(3)}" if is_dir else f"f{rng.randrange(3)}"))
                if target == source:
                    continue
                if target in model:
                    if (model[target] is None) != is_dir:
                        continue
                    if is_dir and any(p.startswith(target + "/") for p in model):
                        continue
                sp, _, sn = source.rpartition("/")
                tp, _, tn = target.rpartition("/")
                await fs.rename(await ino_of(fs, sp), sn, await ino_of(fs, tp), tn, 0)
                moved = {p: v for p, v in model.items() if p == source or p.startswith(source + "/")}
                model.pop(target, None)
                for p in moved:
                    del model[p]
                for p, v in moved.items():
                    model[target + p[len(source) :]] = v
                log[-1] += f" {source} -> {target}"
            elif kind == "list":
                path = rng.choice(dirs())
                found = await listdir(fs, path)
                want = {p.rpartition("/")[2] for p in model if p and p.rpartition("/")[0] == path}
                assert set(found) == want, (path, sorted(found), sorted(want), log[-30:])
            elif kind == "read" and files():
                path = rng.choice(files())
                assert await read_path(fs, path) == model[path], (path, log[-30:])
            if rng.random() < 0.02:
                await fs.flusher.sync_all()
            await trio.sleep(rng.uniform(0, 0.005))
        await fs.flusher.sync_all()
        assert fs.flusher.conflicts == 0
    objects = env.objects()
    want_files = {p: v for p, v in model.items() if v is not None}
    got_files = {k: v for k, v in objects.items() if not k.endswith("/")}
    assert got_files == want_files, (sorted(set(got_files) ^ set(want_files)), log[-40:])
    # every directory is there (marker, or a key below)
    for d in dirs():
        if d:
            assert any(k.startswith(d + "/") for k in objects), d
    # and a second mount shows it all again
    async with env.mount() as fs:
        for path, data in want_files.items():
            assert await read_path(fs, path) == data
