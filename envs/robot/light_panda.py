"""Writes the light Panda of `envs/robot/data/panda/`: pybullet_data's Franka Panda with visual meshes cut to
about a tenth of their triangles, so the CPU renderer draws a 64x64 frame ~5x faster
(`benchmarks/render.py`).

pybullet's TinyRenderer spends a frame's time per triangle, not per pixel, and the stock visual meshes hold
~101,700 triangles. Each visual mesh is split into its material groups, each group is simplified on its own
by quadric edge collapse (`pyfqmr`, open borders kept, so groups still meet without cracks) and drawn in
one flat colour: the group's mean colour in the stock texture, stored in a small palette texture. Vertex
normals are the area-weighted normals of the simplified faces. Collision meshes, the URDF's kinematics and
dynamics are the stock ones, copied.

Regenerate with `pip install -e '.[assets]' && python -m envs.robot.light_panda` (the output is committed; the same
bytes come back).
"""

from __future__ import annotations

import argparse
import os
import shutil
from collections import defaultdict

import numpy as np
import pybullet_data

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "panda")
STOCK_URDF = os.path.join(pybullet_data.getDataPath(), "franka_panda", "panda.urdf")
VISUAL_MESHES = ("link1", "link2", "link3", "link4", "link5", "link6", "hand", "finger")
KEEP_FRACTION = 0.1
_SWATCH = 4                                   # texels per palette colour, so filtering never mixes two
_NO_UV = (0.5, 0.5)                           # where pybullet samples the texture for a corner without one


def read_obj(path: str) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """{material: faces}, each face (vertex positions (3, 3), texture coordinates (3, 2)); polygons fanned."""
    positions, uvs = [], []
    groups: dict[str, list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
    material = ""
    with open(path) as f:
        for line in f:
            fields = line.split()
            if not fields:
                continue
            if fields[0] == "v":
                positions.append([float(x) for x in fields[1:4]])
            elif fields[0] == "vt":
                uvs.append([float(x) for x in fields[1:3]])
            elif fields[0] == "usemtl":
                material = fields[1]
            elif fields[0] == "f":
                corners = [[int(i) if i else 0 for i in c.split("/")] + [0] for c in fields[1:]]
                for triangle in ((corners[0], corners[k], corners[k + 1]) for k in range(1, len(corners) - 1)):
                    groups[material].append((np.array([positions[c[0] - 1] for c in triangle]),
                                             np.array([uvs[c[1] - 1] if c[1] else _NO_UV for c in triangle])))
    return groups


def mean_colour(faces: list[tuple[np.ndarray, np.ndarray]], texture: np.ndarray) -> np.ndarray:
    """The texture's colour at each face's texture-coordinate centroid, averaged over the faces."""
    height, width = texture.shape[:2]
    centres = np.array([uv.mean(axis=0) for _, uv in faces]) % 1.0
    x = np.clip((centres[:, 0] * width).astype(int), 0, width - 1)
    y = np.clip(((1.0 - centres[:, 1]) * height).astype(int), 0, height - 1)
    return texture[y, x, :3].astype(float).mean(axis=0)


def simplify(faces: list[tuple[np.ndarray, np.ndarray]], fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Welded vertices and triangles of one group, cut to `fraction` of its triangles (at least 4)."""
    import pyfqmr

    corners = np.concatenate([xyz for xyz, _ in faces])
    vertices, index = np.unique(np.round(corners, 6), axis=0, return_inverse=True)
    triangles = index.reshape(-1, 3)
    triangles = triangles[(triangles[:, 0] != triangles[:, 1]) & (triangles[:, 1] != triangles[:, 2])
                          & (triangles[:, 0] != triangles[:, 2])]
    simplifier = pyfqmr.Simplify()
    simplifier.setMesh(vertices, triangles)
    simplifier.simplify_mesh(target_count=max(4, round(fraction * len(triangles))), aggressiveness=7,
                             preserve_border=True, verbose=False)
    vertices, triangles, _ = simplifier.getMesh()
    return np.asarray(vertices, float), np.asarray(triangles, int)


def vertex_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Unit normals at the vertices: the sum of the adjacent faces' area-weighted normals."""
    a, b, c = (vertices[triangles[:, k]] for k in range(3))
    face = np.cross(b - a, c - a)
    normals = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(normals, triangles[:, k], face)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return normals / np.where(length > 0, length, 1.0)


def write_mesh(name: str, groups: list[tuple[np.ndarray, np.ndarray, int]], palette_size: int, folder: str) -> int:
    """OBJ + MTL of one mesh: every group's triangles, textured at its palette swatch. Returns triangles."""
    with open(os.path.join(folder, f"{name}.mtl"), "w") as f:
        f.write("newmtl palette\nKa 1 1 1\nKd 1 1 1\nKs 0.06 0.06 0.06\nd 1\nillum 2\nmap_Kd palette.png\n")
    lines = [f"# {name}: written by envs/robot/light_panda.py", f"mtllib {name}.mtl", f"o {name}", "usemtl palette"]
    offset, count = 0, 0
    for texture, (vertices, triangles, swatch) in enumerate(groups, start=1):   # one texture coordinate a group
        lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in vertices]
        lines += [f"vn {x:.5f} {y:.5f} {z:.5f}" for x, y, z in vertex_normals(vertices, triangles)]
        lines.append(f"vt {(swatch + 0.5) / palette_size:.6f} 0.5")
        lines += ["f " + " ".join(f"{offset + i + 1}/{texture}/{offset + i + 1}" for i in tri) for tri in triangles]
        offset += len(vertices)
        count += len(triangles)
    with open(os.path.join(folder, f"{name}.obj"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return count


def build(out: str = OUT, fraction: float = KEEP_FRACTION) -> dict[str, tuple[int, int]]:
    """Writes the light Panda to `out`; returns {mesh: (stock triangles, light triangles)}."""
    from PIL import Image

    stock = os.path.dirname(STOCK_URDF)
    texture = np.asarray(Image.open(os.path.join(stock, "meshes", "visual", "colors.png")).convert("RGB"))
    shutil.rmtree(out, ignore_errors=True)
    visual = os.path.join(out, "meshes", "visual")
    os.makedirs(visual)
    shutil.copytree(os.path.join(stock, "meshes", "collision"), os.path.join(out, "meshes", "collision"))
    shutil.copy(os.path.join(stock, "LICENSE.txt"), out)
    meshes = {name: read_obj(os.path.join(stock, "meshes", "visual", f"{name}.obj")) for name in VISUAL_MESHES}
    colours = [mean_colour(faces, texture) for groups in meshes.values() for faces in groups.values()]
    palette = np.repeat(np.round(colours).astype(np.uint8)[None], _SWATCH, axis=0).repeat(_SWATCH, axis=1)
    Image.fromarray(palette).save(os.path.join(visual, "palette.png"))
    counts, swatch = {}, 0
    for name, groups in meshes.items():
        simplified = []
        for faces in groups.values():
            simplified.append((*simplify(faces, fraction), swatch))
            swatch += 1
        counts[name] = (sum(len(faces) for faces in groups.values()),
                        write_mesh(name, simplified, palette_size=len(colours), folder=visual))
    with open(STOCK_URDF) as f:
        urdf = f.read().replace("package://meshes/", "meshes/")
    declaration, body = urdf.split("\n", 1)
    with open(os.path.join(out, "panda.urdf"), "w") as f:
        f.write(f"{declaration}\n<!-- pybullet_data's franka_panda/panda.urdf, the visual meshes from "
                f"envs/robot/light_panda.py -->\n{body}")
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fraction", type=float, default=KEEP_FRACTION, help="share of each group's triangles kept")
    parser.add_argument("--out", default=OUT)
    args = parser.parse_args()
    for name, (before, after) in build(args.out, args.fraction).items():
        print(f"{name}: {before} -> {after} triangles")


if __name__ == "__main__":
    main()
