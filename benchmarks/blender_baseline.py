"""The traditional pipeline, inside Blender: run as
    xvfb-run -a blender -b --factory-startup -P benchmarks/blender_baseline.py -- job.json

What an artist would set up for the same shot, with Blender's defaults where a default
exists: derrumbe's fractured pieces imported (OBJ, world space at rest), Bullet rigid
bodies (convex hulls, 10 substeps, 10 solver iterations) held together by breakable fixed
constraints along derrumbe's bond graph, the failing storey's bonds removed so the block
drops; a Mantaflow gas domain over the same volume as derrumbe's dust grid with every
piece emitting smoke; then EEVEE and Cycles (CPU) renders of a few frames, timed one by
one, with the camera and resolution of the shot. It writes its timings as JSON.

This runs in Blender's own Python (3.10 for Debian's Blender 3.4): no derrumbe imports.
"""

import json
import math
import sys
import time

import bpy


def log(msg):
    print(f"[baseline] {msg}", flush=True)


def main():
    job = json.load(open(sys.argv[sys.argv.index("--") + 1]))
    res = {"blender": bpy.app.version_string}
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.fps = job["fps"]
    scene.frame_start, scene.frame_end = 1, job["frames"]
    scene.render.resolution_x, scene.render.resolution_y = job["size"]
    scene.render.resolution_percentage = 100

    # ---- import: derrumbe's pieces, Y-up metres -> Blender's Z-up ----------------------
    t0 = time.perf_counter()
    bpy.ops.wm.obj_import(filepath=job["obj"], forward_axis="NEGATIVE_Z", up_axis="Y")
    pieces = sorted([o for o in bpy.context.selected_objects if o.type == "MESH"], key=lambda o: o.name)
    bpy.ops.object.origin_set(type="ORIGIN_GEOMETRY", center="BOUNDS")
    res["import_s"] = time.perf_counter() - t0
    res["pieces"] = len(pieces)
    log(f"imported {len(pieces)} pieces in {res['import_s']:.1f} s")

    mat = bpy.data.materials.new("concrete")
    mat.use_nodes = True
    mat.node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value = (0.42, 0.40, 0.37, 1)
    for o in pieces:
        o.data.materials.append(mat)

    # ---- Bullet: the rigid-body world with Blender's defaults -------------------------
    t0 = time.perf_counter()
    bpy.ops.mesh.primitive_plane_add(size=1000, location=(0, 0, 0))
    ground = bpy.context.active_object
    bpy.ops.rigidbody.world_add()
    rbw = scene.rigidbody_world
    rbw.substeps_per_frame, rbw.solver_iterations = 10, 10        # Blender's defaults, said aloud
    rbw.point_cache.frame_start, rbw.point_cache.frame_end = 1, job["frames"]
    bpy.context.view_layer.objects.active = ground
    bpy.ops.rigidbody.object_add(type="PASSIVE")
    bpy.ops.object.select_all(action="DESELECT")
    for o in pieces:
        o.select_set(True)
    bpy.context.view_layer.objects.active = pieces[0]
    bpy.ops.rigidbody.objects_add(type="ACTIVE")
    for o, m in zip(pieces, job["masses"]):
        o.rigid_body.collision_shape = "CONVEX_HULL"
        o.rigid_body.mass = float(m)
        o.rigid_body.friction = 0.8
    # Bonds: breakable fixed constraints, as Cell Fracture's "connect" would make; those
    # of the failing storey are left out, so the block above drops onto the street.
    coll = bpy.data.collections.new("constraints")
    scene.collection.children.link(coll)
    n_con = 0
    for (a, b), thr in zip(job["bonds"], job["thresholds"]):
        e = bpy.data.objects.new(f"bond_{n_con:05d}", None)
        coll.objects.link(e)
        pa, pb = pieces[a].location, pieces[b].location
        e.location = ((pa.x + pb.x) / 2, (pa.y + pb.y) / 2, (pa.z + pb.z) / 2)
        bpy.context.view_layer.objects.active = e
        bpy.ops.rigidbody.constraint_add(type="FIXED")
        c = e.rigid_body_constraint
        c.object1, c.object2 = pieces[a], pieces[b]
        c.use_breaking, c.breaking_threshold = True, float(thr)
        n_con += 1
    res["constraints"] = n_con
    res["rigid_setup_s"] = time.perf_counter() - t0
    log(f"{n_con} constraints set up in {res['rigid_setup_s']:.1f} s; baking Bullet")
    t0 = time.perf_counter()
    with bpy.context.temp_override(point_cache=rbw.point_cache):
        bpy.ops.ptcache.bake(bake=True)
    res["bullet_bake_s"] = time.perf_counter() - t0
    log(f"Bullet bake {res['bullet_bake_s']:.1f} s")
    # Did the traditional side collapse too? The pieces' mean height, first and last frame.
    z = []
    for f in (1, job["frames"]):
        scene.frame_set(f)
        z.append(sum(o.matrix_world.translation.z for o in pieces) / len(pieces))
    res["mean_height_m"] = z
    log(f"mean piece height {z[0]:.1f} m -> {z[1]:.1f} m")

    # ---- Mantaflow: a gas domain over derrumbe's dust volume, every piece emitting --------
    if job.get("fluid_res"):
        t0 = time.perf_counter()
        lo, hi = job["domain_lo"], job["domain_hi"]     # Blender coordinates
        centre = [(a + b) / 2 for a, b in zip(lo, hi)]
        bpy.ops.mesh.primitive_cube_add(size=1, location=centre)
        dom = bpy.context.active_object
        dom.scale = [b - a for a, b in zip(lo, hi)]
        bpy.ops.object.transform_apply(location=False, rotation=False, scale=True)
        mod = dom.modifiers.new("fluid", "FLUID")
        mod.fluid_type = "DOMAIN"
        ds = mod.domain_settings
        ds.domain_type = "GAS"
        ds.resolution_max = int(job["fluid_res"])
        ds.cache_type = "ALL"
        ds.cache_directory = job["cache_dir"]
        ds.cache_frame_start, ds.cache_frame_end = 1, job["frames"]
        vol = bpy.data.materials.new("smoke")
        vol.use_nodes = True
        nodes = vol.node_tree.nodes
        nodes.remove(nodes["Principled BSDF"])
        pv = nodes.new("ShaderNodeVolumePrincipled")
        pv.inputs["Color"].default_value = (0.55, 0.5, 0.44, 1)
        vol.node_tree.links.new(pv.outputs[0], nodes["Material Output"].inputs["Volume"])
        dom.data.materials.append(vol)
        for o in pieces:
            fm = o.modifiers.new("fluid", "FLUID")
            fm.fluid_type = "FLOW"
            fs = fm.flow_settings
            fs.flow_type, fs.flow_behavior, fs.flow_source = "SMOKE", "INFLOW", "MESH"
            fs.surface_distance = 0.5
        res["fluid_setup_s"] = time.perf_counter() - t0
        log(f"Mantaflow domain {ds.resolution_max} max cells; baking")
        t0 = time.perf_counter()
        with bpy.context.temp_override(object=dom, active_object=dom, selected_objects=[dom]):
            bpy.ops.fluid.bake_all()
        res["mantaflow_bake_s"] = time.perf_counter() - t0
        res["fluid_res"] = int(ds.resolution_max)
        log(f"Mantaflow bake {res['mantaflow_bake_s']:.1f} s")

    # ---- camera, light, renders -------------------------------------------------------
    cam_data = bpy.data.cameras.new("cam")
    cam_data.sensor_fit, cam_data.sensor_width = "HORIZONTAL", 36.0
    cam_data.lens = job["focal_mm"]
    cam_data.shift_x, cam_data.shift_y = job["shift"]
    cam_data.clip_start, cam_data.clip_end = 0.1, 5000
    cam = bpy.data.objects.new("cam", cam_data)
    scene.collection.objects.link(cam)
    cam.location = (0, 0, job["eye_m"])
    cam.rotation_euler = (math.pi / 2, 0, 0)           # looking along +Y = derrumbe's -z
    scene.camera = cam
    sun = bpy.data.objects.new("sun", bpy.data.lights.new("sun", "SUN"))
    sun.data.energy = 4.0
    sun.rotation_euler = (math.radians(50), 0, math.radians(20))
    scene.collection.objects.link(sun)
    world = bpy.data.worlds.new("sky")
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.5, 0.6, 0.8, 1)
    scene.world = world
    scene.render.filepath = job["cache_dir"] + "/render_"
    renders = {}
    for engine in job["engines"]:
        scene.render.engine = engine
        if engine == "CYCLES":
            scene.cycles.device = "CPU"
            scene.cycles.samples = int(job.get("cycles_samples", 32))
            # Debian's Blender is built without OpenImageDenoise: no denoiser to run.
            scene.cycles.use_denoising = False
        times = []
        for f in job["render_frames"]:
            scene.frame_set(f)
            t0 = time.perf_counter()
            bpy.ops.render.render(write_still=False)
            times.append(time.perf_counter() - t0)
            log(f"{engine} frame {f}: {times[-1]:.1f} s")
        renders[engine] = times
    res["render_s"] = renders
    json.dump(res, open(job["result"], "w"), indent=1)


try:
    main()
except Exception as e:          # Blender swallows exit codes of -P scripts otherwise
    import traceback
    traceback.print_exc()
    sys.exit(1)
