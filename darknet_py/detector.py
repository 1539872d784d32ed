"""`darknet-py detector test | map`: darknet's detector inference and evaluation (src/detector.c).

test (test_detector): per image, darknet's resize_image (or letterbox_image with -letter_box or [net]
letter_box=1), one forward, get_network_boxes (thresh, hier_thresh), NMS with the nms_kind/beta_nms of the last
yolo/region layer (IoU threshold -nms, darknet's fixed .45), then
    IMAGE: Predicted in X milli-seconds.
    name: NN%                              (one line per class above thresh, boxes left to right)
    name: NN%\t(left_x: ... top_y: ... width: ... height: ...)       with -ext_output
and predictions.jpg with the boxes (written even with -dont_show, as darknet does; no window is ever opened).
-out FILE writes darknet's JSON (detection_to_json) for every image, at the end (also when an error stops the
run: the images done are kept). Without IMAGE, paths are read from stdin after darknet's "Enter Image Path: "
prompt; IMAGE may also be a .txt list of paths. In a list or on stdin, an unreadable image is named on stderr,
skipped and counted (`Skipped N unreadable images` at the end); one IMAGE that cannot be read is an error.

map (validate_detector_map): every image of the .data `valid` list (thresh .005, hier 0, NMS .45), truth from
YOLO label files (detection.label_path), per-class AP, precision/recall/F1/TP/FP/FN/average IoU at -thresh, and
mAP@-iou_thresh by -points 0 (area under the curve), 11 (VOC2007) or 101 (COCO), printed as darknet prints them.

Differences from darknet: every bad input (image, names, weights, cfg without a detection head, a threshold
outside 0..1, heads whose outputs are NaN/Inf or boxes that overflow) is a one-line error with exit code 2 where
darknet prints a warning and goes on, prints garbage or crashes; the layer table is printed after the checks
(darknet prints it as it loads); output files are written atomically; `map` honours -letter_box too (darknet
uses only [net] letter_box there) and takes -points 0, 11 or 101 only; darknet's " Detection layer: N - type =
T" debug lines are not printed; -gpus warns and runs on the CPU when no CUDA engine can use the GPU.
"""
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from .detection import (MAP_POINTS, NMS_DEFAULT_IOU, MapStats, apply_nms, check_detector, check_points,
                        detection_heads, label_path, network_boxes, network_input, nms_layer, printed_detections,
                        read_truth, shown)
from .atomic import write_atomic
from .errors import DarknetDataError, DarknetError
from .trainer import add_gpus_option, gpus_device, check_memory_and_print_table

JSON_FLOOR = 0.005   # detection_to_json: classes above this (get_network_boxes already applied thresh)
MAP_THRESH = 0.005   # validate_detector_map's detection threshold


# -- network and names ------------------------------------------------------------------------------
def load_detector(cfg, weights, device="cpu"):
    """The network of `cfg` at batch 1 with `weights` (frozen: Network.freeze_weights), refused unless it has a
    detection head."""
    from .network import Network
    from .weights import load_weights
    net = Network(cfg, batch=1, device=device)
    check_detector(net)
    if weights is not None:
        load_weights(net, weights, strict=True)
    net.freeze_weights()   # test and map only run inference
    return net


def read_names(data_path, net):
    """The .data `names` list, which must have one name per class of every detection layer."""
    from .datafile import read_class_list, read_data_file
    data = read_data_file(data_path)
    names_path = data.existing_file("names", " (the class names file)")
    names = read_class_list(names_path)
    for layer in detection_heads(net):
        if layer.classes != len(names):
            raise DarknetError(f"{names_path} has {len(names)} names, but {layer.section.where('classes')} "
                               f"is {layer.classes}: expected one name per class")
    return data, names


# -- one image --------------------------------------------------------------------------------------
def image_array(image, channels):
    """(C, H, W) float32 in 0..1 from a path, a PIL image, an (H, W[, C]) uint8 array or a (C, H, W) float
    array (darknet's own layout)."""
    from .data import load_image
    if isinstance(image, (str, Path)):
        return load_image(str(image), channels)
    if hasattr(image, "convert"):   # PIL image
        image = np.asarray(image.convert("L" if channels == 1 else "RGB"))
    array = np.asarray(image)
    if array.dtype == np.uint8:
        array = array[:, :, None] if array.ndim == 2 else array
        return (array.astype(np.float32) / np.float32(255)).transpose(2, 0, 1).copy()
    if array.ndim == 3 and array.shape[0] == channels:
        return array.astype(np.float32)
    raise DarknetError(f"image of shape {array.shape} and type {array.dtype}: expected a path, a PIL image, an "
                       f"(H, W, C) uint8 array or a ({channels}, H, W) float array")


def detect_image(net, image, thresh=0.25, nms=NMS_DEFAULT_IOU, hier_thresh=0.5, letter_box=None):
    """Darknet's test pipeline on one (C, H, W) image: returns (Detections after NMS, forward seconds)."""
    if image.shape[0] != net.channels:
        raise DarknetError(f"image with {image.shape[0]} channels; {net.cfg_path} expects {net.channels}")
    letter_box = bool(net.options.letter_box) if letter_box is None else letter_box
    x = network_input(image, net.width, net.height, letter_box)
    start = time.perf_counter()
    net.forward_checked(x, detection_heads(net))
    seconds = time.perf_counter() - start
    dets = network_boxes(net, image.shape[2], image.shape[1], thresh, hier_thresh, letter_box)
    return apply_nms(net, dets, nms), seconds


def detect(net, image, thresh=0.25, nms=NMS_DEFAULT_IOU, hier_thresh=0.5, letter_box=None, names=None):
    """`net.detect`: [(class name, or id without `names`, probability, (centre x, centre y, width, height) in
    pixels of the image)] in the order darknet prints them (left to right; per box its best class first)."""
    heads = check_detector(net)
    array = image_array(image, net.channels)
    dets, _ = detect_image(net, array, thresh, nms, hier_thresh, letter_box)
    classes = heads[0].classes
    labels = list(names) if names is not None else list(range(classes))
    im_h, im_w = array.shape[1:]
    return [(labels[cls], prob, (box[0] * im_w, box[1] * im_h, box[2] * im_w, box[3] * im_h))
            for cls, prob, box, _ in printed_detections(dets, thresh, [str(n) for n in labels])]


def c_round(value):
    """C's round(): halves away from zero."""
    return math.copysign(math.floor(abs(value) + 0.5), value)


def detection_lines(dets, thresh, names, im_w, im_h, ext_output=False):
    """draw_detections_v3's text: `name: NN%` (+ the box in pixels with ext_output)."""
    lines = []
    for cls, prob, box, _ in printed_detections(dets, thresh, names):
        line = f"{names[cls]}: {float(np.float32(prob) * np.float32(100)):.0f}%"
        if ext_output:
            x, y, w, h = (np.float32(v) for v in box)
            left = c_round(float((x - w / np.float32(2)) * np.float32(im_w)))
            top = c_round(float((y - h / np.float32(2)) * np.float32(im_h)))
            line += (f"\t(left_x: {left:4.0f}   top_y: {top:4.0f}   width: {c_round(float(w * np.float32(im_w))):4.0f}"
                     f"   height: {c_round(float(h * np.float32(im_h))):4.0f})")
        lines.append(line)
    return lines


def json_frame(dets, names, frame_id, filename):
    """detection_to_json's text for one image (darknet's spacing; the filename JSON-escaped)."""
    objects = []
    for i in range(len(dets)):
        x, y, w, h = (float(v) for v in dets.boxes[i])
        for cls in range(len(names)):
            prob = dets.probs[i, cls]
            if prob > np.float32(JSON_FLOOR) and shown(names[cls]):
                objects.append(f"  {{\"class_id\":{cls}, \"name\":{json.dumps(names[cls])}, \"relative_coordinates\":"
                               f"{{\"center_x\":{x:f}, \"center_y\":{y:f}, \"width\":{w:f}, \"height\":{h:f}}}, "
                               f"\"confidence\":{float(prob):f}}}")
    return (f"{{\n \"frame_id\":{frame_id}, \n \"filename\":{json.dumps(filename)}, \n \"objects\": [ \n"
            + ", \n".join(objects) + "\n ] \n}")


# -- drawing ----------------------------------------------------------------------------------------
_COLORS = ((1, 0, 1), (0, 0, 1), (0, 1, 1), (0, 1, 0), (1, 1, 0), (1, 0, 0))


def class_color(cls, classes):
    """Darknet's get_color for class `cls`: (r, g, b) in 0..255."""
    offset = cls * 123457 % classes
    ratio = offset / classes * 5
    i, j = math.floor(ratio), math.ceil(ratio)
    ratio -= i
    return tuple(int(255 * ((1 - ratio) * _COLORS[i][c] + ratio * _COLORS[j][c])) for c in (0, 1, 2))


def draw_detections(image, dets, thresh, names):
    """A PIL RGB image of `image` (C, H, W) with darknet's boxes and labels (draw_detections_v3: line width
    h*.002, colour by class, label 'name: 0.97, other' on the box's top-left corner, least probable first)."""
    from PIL import Image, ImageDraw
    pixels = np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8).transpose(1, 2, 0)
    picture = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels[:, :, :3]).convert("RGB")
    draw = ImageDraw.Draw(picture)
    im_w, im_h = picture.size
    boxes = {}
    for cls, prob, box, best in printed_detections(dets, thresh, names):
        entry = boxes.setdefault(box, [best, 0.0, []])
        if cls == best:
            entry[1] = prob
        else:
            entry[2].append(names[cls])
    width = max(1, int(im_h * .002))
    for (x, y, w, h), (best, prob, others) in sorted(boxes.items(), key=lambda item: item[1][1]):
        left, right = max(int((x - w / 2) * im_w), 0), min(int((x + w / 2) * im_w), im_w - 1)
        top, bottom = max(int((y - h / 2) * im_h), 0), min(int((y + h / 2) * im_h), im_h - 1)
        color = class_color(best, len(names))
        draw.rectangle((left, top, right, bottom), outline=color, width=width)
        text = ", ".join([f"{names[best]}: {prob:.2f}"] + others)
        x0, y0, x1, y1 = draw.textbbox((0, 0), text)
        label_top = top + width - (y1 - y0 + 4) if top + width - (y1 - y0 + 4) >= 0 else top + width
        draw.rectangle((left, label_top, left + x1 - x0 + 4, label_top + y1 - y0 + 4), fill=color)
        draw.text((left + 2 - x0, label_top + 2 - y0), text, fill=(0, 0, 0))
    return picture


def save_output(path, write):
    """An output file written atomically (no half-written predictions.jpg or JSON), or a one-line error."""
    write_atomic(path, write, error=DarknetError)


# -- detector test ----------------------------------------------------------------------------------
def single_image(image):
    """Whether test_detector's IMAGE argument is one image (not a .txt list, not stdin)."""
    return image is not None and not image.lower().endswith(".txt")


def image_paths(image, stdin, out):
    """The paths test_detector reads: IMAGE; the lines of IMAGE when it is a .txt list; else stdin lines after
    darknet's 'Enter Image Path: ' prompt (blank lines skipped)."""
    if single_image(image):
        yield image
        return
    if image is not None:
        from .data import read_list
        yield from read_list(image)
        return
    while True:
        out.write("Enter Image Path: ")
        out.flush()
        line = stdin.readline()
        if not line:
            return
        path = line.strip("\r\n")
        if path.strip():
            yield path


def test_detector(data_path, cfg, weights, image=None, thresh=0.25, hier_thresh=0.5, nms=NMS_DEFAULT_IOU,
                  ext_output=False, letter_box=False, outfile=None, predictions="predictions.jpg",
                  stdin=None, out=None, err=None, quiet=True, device="cpu"):
    """The `detector test` verb. Returns the number of images processed."""
    from .data import load_image
    stdin, out, err = stdin or sys.stdin, out or sys.stdout, err or sys.stderr
    net = load_detector(cfg, weights, device)
    _, names = read_names(data_path, net)
    check_memory_and_print_table(net, quiet)
    letter_box = bool(letter_box or net.options.letter_box)
    frames, skipped = [], []
    try:
        for path in image_paths(image, stdin, out):
            try:
                array = load_image(path, net.channels)
            except DarknetDataError as e:
                if single_image(image):
                    raise
                print(f"warning: {e}; skipped", file=err)
                skipped.append(str(e))
                continue
            dets, seconds = detect_image(net, array, thresh, nms, hier_thresh, letter_box)
            print(f"{path}: Predicted in {seconds * 1000:f} milli-seconds.", file=out)
            for line in detection_lines(dets, thresh, names, array.shape[2], array.shape[1], ext_output):
                print(line, file=out)
            if predictions:
                picture = draw_detections(array, dets, thresh, names)
                save_output(predictions, lambda f: picture.save(f, format="JPEG", quality=80))
            frames.append(json_frame(dets, names, len(frames) + 1, path))
    finally:   # the images done are kept whatever stops the run
        if outfile and frames:
            text = "[\n" + ", \n".join(frames) + "\n]"
            save_output(outfile, lambda f: f.write(text.encode("utf-8")))
    if skipped and not frames:
        raise DarknetDataError(f"{image or 'stdin'}: none of the {len(skipped)} images could be read; first: "
                               f"{skipped[0]}")
    if skipped:
        print(f"Skipped {len(skipped)} unreadable images", file=err)
    return len(frames)


# -- detector map -----------------------------------------------------------------------------------
def validate_map(net, paths, classes=None, thresh=0.25, iou_thresh=0.5, points=0, letter_box=None,
                 difficult_paths=None, progress=None, ranks=None):
    """Darknet's validate_detector_map on an image list with YOLO labels (detection.label_path): returns a
    detection.MapResult (.map in 0..1, .aps per class, .precision, .recall, .f1, .tp, .fp, .fn, .average_iou,
    ...). `thresh` is the confidence for the precision/recall/IoU statistics, `iou_thresh` the matching IoU;
    `letter_box` defaults to the cfg's; progress(i) is called after each image. With `ranks` (a data-parallel
    run), each rank runs its part of the list and the statistics are joined in list order."""
    from .data import load_image
    check_detector(net)
    check_points(points)   # before the images, not after them in average_precision
    classes = nms_layer(net).classes if classes is None else classes
    letter_box = bool(net.options.letter_box) if letter_box is None else letter_box
    stats = MapStats(classes, thresh, iou_thresh)
    for i in range(len(paths)) if ranks is None else ranks.part(range(len(paths))):
        path = paths[i]
        array = load_image(path, net.channels)
        dets, _ = detect_image(net, array, MAP_THRESH, NMS_DEFAULT_IOU, 0.0, letter_box)
        truth_ids, truth_boxes = read_truth(label_path(path), classes)
        if difficult_paths is not None:
            hard_ids, hard_boxes = read_truth(label_path(difficult_paths[i]), classes)
        else:
            hard_ids = hard_boxes = None
        stats.add(dets, truth_ids, truth_boxes, hard_ids, hard_boxes)
        if progress:
            progress(i + 1)
    if ranks is not None:
        parts = ranks.allgather(stats, "the mAP statistics")
        stats = parts[0]
        for part in parts[1:]:
            stats.extend(part)
    return stats.result(points)


def map_lines(result, names):
    """What validate_detector_map prints after the images, line by line."""
    lines = ["", f" detections_count = {result.detections_count}, unique_truth_count = "
                 f"{result.unique_truth_count}  "]
    for cls, ap in enumerate(result.aps):
        lines.append(f"class_id = {cls}, name = {names[cls]}, ap = {ap * 100:2.2f}%   \t (TP = "
                     f"{result.tp_per_class[cls]}, FP = {result.fp_per_class[cls]}) ")
    lines += ["", f" for conf_thresh = {result.thresh:1.2f}, precision = {result.precision:1.2f}, recall = "
                  f"{result.recall:1.2f}, F1-score = {result.f1:1.2f} ",
              f" for conf_thresh = {result.thresh:0.2f}, TP = {result.tp}, FP = {result.fp}, FN = {result.fn}, "
              f"average IoU = {result.average_iou * 100:2.2f} % ", "",
              f" IoU threshold = {result.iou_thresh * 100:2.0f} %, " +
              (f"used {result.points} Recall-points " if result.points else
               "used Area-Under-Curve for each unique Recall "),
              f" mean average precision (mAP@{result.iou_thresh:0.2f}) = {result.map:f}, or "
              f"{result.map * 100:2.2f} % ", "", "Set -points flag:", " `-points 101` for MS COCO ",
              " `-points 11` for PascalVOC 2007 (uncomment `difficult` in voc.data) ",
              " `-points 0` (AUC) for ImageNet, PascalVOC 2010-2012, your custom dataset"]
    return lines


def map_detector(data_path, cfg, weights, thresh=0.25, iou_thresh=0.5, points=0, letter_box=False,
                 out=None, err=None, quiet=True, device="cpu"):
    """The `detector map` verb: prints darknet's report and returns the mAP (0..1)."""
    from .data import read_list
    out, err = out or sys.stdout, err or sys.stderr
    net = load_detector(cfg, weights, device)
    data, names = read_names(data_path, net)
    paths = read_list(data.valid)
    difficult = data.get("difficult")
    difficult_paths = read_list(data.resolve(difficult)) if difficult else None
    if difficult_paths is not None and len(difficult_paths) != len(paths):
        raise DarknetError(f"{data.where('difficult')}: {len(difficult_paths)} paths; expected one per valid "
                           f"image ({len(paths)})")
    check_memory_and_print_table(net, quiet)
    print("\n calculation mAP (mean average precision)...", file=out)
    start = time.time()
    result = validate_map(net, paths, len(names), thresh, iou_thresh, points, letter_box or None, difficult_paths,
                          progress=lambda i: print(f"\r{i}", end="", file=err, flush=True))
    for line in map_lines(result, names):
        print(line, file=out)
    print(f"\nTotal Detection Time: {int(time.time() - start)} Seconds", file=err)
    return result.map


# -- command line -----------------------------------------------------------------------------------
def cmd_test(args):
    test_detector(args.data, args.cfg, args.weights, args.image, args.thresh, args.hier, args.nms,
                  args.ext_output, args.letter_box, args.out, quiet=False, device=gpus_device(args))


def cmd_map(args):
    map_detector(args.data, args.cfg, args.weights, args.thresh, args.iou_thresh, args.points, args.letter_box,
                 quiet=False, device=gpus_device(args))


def _common(parser):
    from .cli import FRACTION
    parser.add_argument("data", help="the .data file (names=, valid=)")
    parser.add_argument("cfg")
    parser.add_argument("weights")
    parser.add_argument("-thresh", type=FRACTION, default=0.25, help="confidence threshold, 0..1 (default .25)")
    parser.add_argument("-letter_box", action="store_true", help="letterbox instead of stretching the image")
    add_gpus_option(parser)
    parser.add_argument("-dont_show", action="store_true", help="accepted: no window is ever opened")


def register_cli(sub):
    """Adds `detector` with the sub-verbs test and map; returns the detector sub-verb group so that other
    modules can add theirs (detector train)."""
    from .cli import FRACTION
    detector = sub.add_parser("detector", help="darknet's detector verbs: test, map, train")
    verbs = detector.add_subparsers(dest="detector_command", required=True, parser_class=type(detector))
    test = verbs.add_parser("test", help="detect objects in images (darknet detector test)")
    _common(test)
    test.add_argument("image", nargs="?", help="an image, or a .txt list of images; default: paths from stdin")
    test.add_argument("-hier", type=FRACTION, default=0.5, help="hierarchical threshold, 0..1 (default .5)")
    test.add_argument("-nms", type=FRACTION, default=NMS_DEFAULT_IOU,
                      help="NMS IoU threshold, 0..1 (default .45; 0: none)")
    test.add_argument("-ext_output", action="store_true", help="print box coordinates in pixels")
    test.add_argument("-out", default=None, help="write darknet's JSON results to this file")
    test.set_defaults(run=cmd_test)
    valid = verbs.add_parser("map", help="mean average precision on the .data valid list (darknet detector map)")
    _common(valid)
    valid.add_argument("-iou_thresh", type=FRACTION, default=0.5, help="IoU for a true positive, 0..1 (default .5)")
    valid.add_argument("-points", type=int, choices=MAP_POINTS, default=0,
                       help="0: area under the curve, 11: VOC2007, 101: COCO")
    valid.set_defaults(run=cmd_map)
    from .detector_train import add_train_verb
    add_train_verb(verbs)
    return verbs
