// edgemark_track: the C++ twin of `python -m runtime.track` (same flags, CSV and printed summary).
//
//   edgemark_track face.mp4 --model pfld.xml --csv landmarks.csv --out annotated.mp4
//   edgemark_track photos/ --model pfld.onnx --csv faces.csv      # independent photographs
//   edgemark_track 0 --model pfld_int8.xml --max-frames 300        # camera index 0 ("webcam": the first that opens)
//   edgemark_track face.mp4 --model pfld.onnx --smooth none --boxes boxes.csv --csv replay.csv
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/core/utils/logger.hpp>
#include <opencv2/videoio.hpp>
#include <fcntl.h>
#include <unistd.h>

#include "card.hpp"
#include "detector.hpp"
#include "errors.hpp"
#include "landmarker.hpp"
#include "outputs.hpp"
#include "smoothing.hpp"
#include "tracker.hpp"

namespace fs = std::filesystem;
using namespace edgemark;

namespace {

const char* const kUsage = R"(usage: edgemark_track [SOURCE] [options]

Track facial landmarks in a video, camera or image folder: the C++ twin of python -m runtime.track,
on OpenVINO, reading the same artifact (.onnx or OpenVINO .xml) and its card (<artifact>.json).

SOURCE: webcam (default), a camera index, a video file or an image folder.
  --model PATH            artifact with a card (default: the zoo's PFLD-GhostOne in the edgemark cache)
  --backend openvino      the only engine here (accepted for the Python flags' sake)
  --device cpu            the only device here
  --threads N             inference threads (0: OpenVINO's default)
  --detector SPEC         yunet (the cached zoo file) or yunet:FILE.onnx (YuNet 2023mar)
  --detector-scale F      detect on a copy scaled by F in (0, 1] (default: the smallest face 32 px)
  --min-face F            smallest face, fraction of the shorter side (default 0.1)
  --smooth NAME           one_euro (default), ema, kalman or none
  --redetect-every N      re-run the detector every N frames (0: only when lost; default 30)
  --max-faces N           default 4
  --no-show               never a window (the only mode here; --show exits 2)
  --out FILE.mp4          annotated video
  --csv FILE              per-frame landmarks, the Python tracker's CSV format
  --json FILE             per-frame landmarks as JSON
  --max-frames N          stop after N frames (0: end of stream)
  --frames                an image folder is one video's frames (default: independent photographs)
  --boxes FILE            crop exactly these boxes instead of detecting and tracking (parity runs):
                          CSV with a header and rows frame,face_id,box_kind,x1,y1,x2,y2
                          (box_kind: detector or landmarks)
Without --out/--csv/--json, <source>_landmarks.mp4 and .csv are written in the current folder.)";

const char* const kImageSuffixes[] = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp"};
constexpr int kMaxCameraIndex = 4;

struct Config {
    std::string source = "webcam";
    std::string model;
    std::string backend;
    std::string device = "cpu";
    int threads = 0;
    std::string detector = "yunet";
    std::optional<double> detector_scale;
    std::optional<double> min_face;
    std::string smooth = "one_euro";
    int redetect_every = 30;
    int max_faces = 4;
    bool show = false;
    OutputPaths outputs;
    int max_frames = 0;
    bool frames = false;
    std::string boxes;
};

double parse_number(const std::string& flag, const std::string& text) {
    try {
        size_t used = 0;
        double value = std::stod(text, &used);
        if (used == text.size()) return value;
    } catch (const std::exception&) {
    }
    throw UsageError(flag + ": expected a number, got '" + text + "'");
}

int parse_integer(const std::string& flag, const std::string& text) {
    try {
        size_t used = 0;
        int value = std::stoi(text, &used);
        if (used == text.size()) return value;
    } catch (const std::exception&) {
    }
    throw UsageError(flag + ": expected an integer, got '" + text + "'");
}

Config parse_arguments(int argc, char** argv) {
    Config config;
    bool have_source = false;
    std::vector<std::string> arguments(argv + 1, argv + argc);
    for (size_t i = 0; i < arguments.size(); ++i) {
        std::string flag = arguments[i], value;
        bool inline_value = false;
        if (flag.rfind("--", 0) == 0 && flag.find('=') != std::string::npos) {
            value = flag.substr(flag.find('=') + 1);
            flag = flag.substr(0, flag.find('='));
            inline_value = true;
        }
        auto next = [&]() -> std::string {
            if (inline_value) return value;
            if (i + 1 >= arguments.size()) throw UsageError(flag + " needs a value");
            return arguments[++i];
        };
        if (flag == "-h" || flag == "--help") {
            std::cout << kUsage << std::endl;
            std::exit(0);
        } else if (flag == "--model") config.model = next();
        else if (flag == "--backend") config.backend = next();
        else if (flag == "--device") config.device = next();
        else if (flag == "--threads") config.threads = parse_integer(flag, next());
        else if (flag == "--detector") config.detector = next();
        else if (flag == "--detector-scale") config.detector_scale = parse_number(flag, next());
        else if (flag == "--min-face") config.min_face = parse_number(flag, next());
        else if (flag == "--smooth") config.smooth = next();
        else if (flag == "--redetect-every") config.redetect_every = parse_integer(flag, next());
        else if (flag == "--max-faces") config.max_faces = parse_integer(flag, next());
        else if (flag == "--show") config.show = true;
        else if (flag == "--no-show") config.show = false;
        else if (flag == "--out") config.outputs.video = next();
        else if (flag == "--csv") config.outputs.csv = next();
        else if (flag == "--json") config.outputs.json = next();
        else if (flag == "--max-frames") config.max_frames = parse_integer(flag, next());
        else if (flag == "--frames") config.frames = true;
        else if (flag == "--boxes") config.boxes = next();
        else if (flag == "--save-frames" || flag == "--save-every") {
            throw UsageError(flag + " is not in the C++ demo; make pseudo-labels with python -m runtime.track --save-frames DIR");
        } else if (flag.rfind("-", 0) == 0 && flag.size() > 1) {
            throw UsageError("unknown option '" + flag + "'; see edgemark_track --help");
        } else if (!have_source) {
            config.source = flag;
            have_source = true;
        } else {
            throw UsageError("unexpected argument '" + flag + "' (one SOURCE only); see edgemark_track --help");
        }
    }
    if (config.redetect_every < 0 || config.max_faces < 1 || config.max_frames < 0 ||
        (config.detector_scale && !(0 < *config.detector_scale && *config.detector_scale <= 1)) ||
        (config.min_face && !(0 < *config.min_face && *config.min_face < 1)) || config.threads < 0) {
        throw UsageError("--redetect-every must be >= 0, --max-faces >= 1, --max-frames >= 0 (0: all), --threads >= 0, "
                         "--detector-scale in (0, 1] and --min-face in (0, 1)");
    }
    if (!config.backend.empty() && config.backend != "openvino") {
        throw UsageError("backend '" + config.backend + "' is not in the C++ demo, which runs OpenVINO only; drop --backend or pass openvino");
    }
    if (config.device != "cpu") {
        throw UsageError("device '" + config.device + "' is not in the C++ demo, which runs on the CPU only");
    }
    make_smoother(config.smooth, 30.0);  // an unknown smoother name fails before any work
    if (config.show) {
        throw UsageError("--show: the C++ demo opens no window; write files with --out/--csv/--json (or use python -m runtime.track --show)");
    }
    return config;
}

fs::path cache_root() {
    const char* cache = std::getenv("EDGEMARK_CACHE");
    if (cache && *cache) return fs::path(cache) / "models";
    const char* home = std::getenv("HOME");
    return fs::path(home ? home : ".") / ".cache" / "edgemark" / "models";
}

std::string default_model() {
    fs::path path = cache_root() / "pfld_ghostone" / "pfld_ghostone.onnx";
    if (!fs::is_regular_file(path)) {
        throw EdgemarkError("no --model given and the zoo's default model is not in the cache (" + path.string() +
                            "); run python -m runtime.track once to fetch it, or pass --model ARTIFACT");
    }
    return path.string();
}

std::string yunet_path(const std::string& spec) {
    auto colon = spec.find(':');
    std::string name = spec.substr(0, colon);
    if (name != "yunet") {
        throw UsageError("face detector '" + name + "' is not in the C++ demo; valid: yunet, yunet:FILE.onnx (YuNet 2023mar)");
    }
    if (colon != std::string::npos && colon + 1 < spec.size()) {
        std::string path = spec.substr(colon + 1);
        if (!fs::is_regular_file(path)) {
            throw EdgemarkError("YuNet model file not found: " + path + "; download face_detection_yunet_2023mar.onnx from the "
                                "OpenCV model zoo and pass --detector yunet:PATH");
        }
        return path;
    }
    fs::path cached = cache_root() / "yunet" / "face_detection_yunet_2023mar.onnx";
    if (!fs::is_regular_file(cached)) {
        throw EdgemarkError("YuNet is not in the model cache (" + cached.string() + "); run python -m runtime.track once to "
                            "fetch it, or pass --detector yunet:PATH to face_detection_yunet_2023mar.onnx");
    }
    return cached.string();
}

// Keeps stderr closed while alive: libavformat prints its own lines for a file it cannot open.
class QuietStderr {
public:
    QuietStderr() {
        std::fflush(stderr);
        saved_ = dup(2);
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0) {
            dup2(null, 2);
            close(null);
        }
    }
    ~QuietStderr() {
        if (saved_ >= 0) {
            dup2(saved_, 2);
            close(saved_);
        }
    }

private:
    int saved_ = -1;
};

// Frames of a camera, video file or image folder (runtime.track.open_source).
class Source {
public:
    explicit Source(const std::string& source) {
        bool digits = !source.empty() && std::all_of(source.begin(), source.end(), ::isdigit);
        if (source == "webcam" || digits) {
            open_camera(source, digits);
            return;
        }
        fs::path path(source);
        if (fs::is_directory(path)) {
            for (const auto& entry : fs::directory_iterator(path)) {
                std::string suffix = entry.path().extension().string();
                std::transform(suffix.begin(), suffix.end(), suffix.begin(), ::tolower);
                if (std::find(std::begin(kImageSuffixes), std::end(kImageSuffixes), suffix) != std::end(kImageSuffixes)) {
                    images_.push_back(entry.path());
                }
            }
            if (images_.empty()) throw EdgemarkError(source + ": no images (.jpg, .jpeg, .png, .bmp, .ppm, .webp) in this folder");
            std::sort(images_.begin(), images_.end());
            for (const auto& image : images_) image_names_.push_back(image.filename().string());
            folder_ = true;
            count_ = static_cast<int>(images_.size());
            name_ = path.filename().string();
            if (name_.empty()) name_ = path.parent_path().filename().string();
            return;
        }
        if (!fs::exists(path)) {
            throw EdgemarkError(source + ": no such file, folder or camera; expected 'webcam', a camera index, a video or an image folder");
        }
        {
            // FFmpeg, not GStreamer (which Debian's OpenCV tries next, with several warnings), and no
            // library chatter on stderr: an unreadable file gets our one error line.
            QuietStderr quiet;
            capture_.open(source, cv::CAP_FFMPEG);
        }
        if (!capture_.isOpened()) {
            throw EdgemarkError(source + ": OpenCV cannot open this video (unsupported codec or not a video file)");
        }
        count_ = static_cast<int>(capture_.get(cv::CAP_PROP_FRAME_COUNT));
        fps_ = capture_.get(cv::CAP_PROP_FPS);
        if (!(fps_ > 0)) fps_ = 30.0;
        if (!capture_.read(first_) || first_.empty()) {
            throw EdgemarkError(source + ": OpenCV opened it but could not decode a single frame; is the file complete?");
        }
        name_ = path.stem().string();
    }

    // The next frame (empty for an unreadable image or a dropped camera frame) and its timestamp;
    // false at the end of the stream.
    bool next(cv::Mat& frame, std::optional<double>& timestamp) {
        if (folder_) {
            if (index_ >= count_) return false;
            frame = cv::imread(images_[index_++].string(), cv::IMREAD_COLOR);
            timestamp.reset();
            return true;
        }
        if (camera_) {
            if (!first_.empty()) {
                frame = first_;
                first_.release();
            } else if (!capture_.read(frame)) {
                frame.release();  // a dropped frame: keep going
            }
            timestamp = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
            return true;
        }
        if (!first_.empty()) {
            frame = first_;
            first_.release();
        } else if (!capture_.read(frame) || frame.empty()) {
            return false;
        }
        timestamp = index_++ / fps_;
        return true;
    }

    int count() const { return count_; }
    double fps() const { return fps_; }
    const std::string& name() const { return name_; }
    bool folder() const { return folder_; }
    const std::vector<std::string>& image_names() const { return image_names_; }

private:
    void open_camera(const std::string& source, bool digits) {
        std::vector<int> indices;
        if (digits) indices.push_back(std::stoi(source));
        else for (int index = 0; index < kMaxCameraIndex; ++index) indices.push_back(index);
        std::string tried;
        for (int index : indices) {
            capture_.open(index);
            if (capture_.isOpened() && capture_.read(first_) && !first_.empty()) {
                camera_ = true;
                fps_ = capture_.get(cv::CAP_PROP_FPS);
                if (!(fps_ > 0)) fps_ = 30.0;
                name_ = "camera" + std::to_string(index);
                started_ = std::chrono::steady_clock::now();
                return;
            }
            capture_.release();
            tried += (tried.empty() ? "" : ", ") + std::to_string(index);
        }
        std::string devices;
        if (fs::is_directory("/dev")) {
            for (const auto& entry : fs::directory_iterator("/dev")) {
                if (entry.path().filename().string().rfind("video", 0) == 0) devices += (devices.empty() ? "" : ", ") + entry.path().string();
            }
        }
        throw EdgemarkError("no camera could be opened (tried index " + tried + " through OpenCV; /dev/video*: " +
                            (devices.empty() ? "none" : devices) + "); pass a video file or an image folder instead");
    }

    cv::VideoCapture capture_;
    cv::Mat first_;
    std::vector<fs::path> images_;
    std::vector<std::string> image_names_;
    bool folder_ = false, camera_ = false;
    int count_ = 0, index_ = 0;
    double fps_ = 30.0;
    std::string name_;
    std::chrono::steady_clock::time_point started_;
};

// --boxes: frame -> the boxes to crop in it.
std::map<int, std::vector<GivenBox>> read_boxes(const std::string& path) {
    std::ifstream stream(path);
    if (!stream) throw EdgemarkError(path + ": cannot read the boxes file");
    std::map<int, std::vector<GivenBox>> boxes;
    std::string line;
    std::getline(stream, line);
    if (line.rfind("frame,face_id,box_kind,x1,y1,x2,y2", 0) != 0) {
        throw EdgemarkError(path + ": a boxes file starts with the header frame,face_id,box_kind,x1,y1,x2,y2");
    }
    int number = 1;
    while (std::getline(stream, line)) {
        ++number;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.empty()) continue;
        std::vector<std::string> fields;
        std::stringstream row(line);
        for (std::string field; std::getline(row, field, ',');) fields.push_back(field);
        GivenBox given;
        try {
            if (fields.size() != 7) throw std::invalid_argument("fields");
            given.face_id = std::stoi(fields[1]);
            given.kind = fields[2];
            given.box = {std::stod(fields[3]), std::stod(fields[4]), std::stod(fields[5]), std::stod(fields[6])};
            if (given.kind != "detector" && given.kind != "landmarks") throw std::invalid_argument("kind");
            if (!(given.box.x2 > given.box.x1 && given.box.y2 > given.box.y1)) throw std::invalid_argument("area");
        } catch (const std::exception&) {
            throw EdgemarkError(path + ":" + std::to_string(number) + ": expected frame,face_id,box_kind,x1,y1,x2,y2 with "
                                "box_kind detector or landmarks and x1 < x2, y1 < y2; got '" + line + "'");
        }
        boxes[std::stoi(fields[0])].push_back(given);
    }
    return boxes;
}

int run(const Config& given_config) {
    Config config = given_config;
    Source source(config.source);
    if (config.outputs.video.empty() && config.outputs.csv.empty() && config.outputs.json.empty()) {
        config.outputs.video = source.name() + "_landmarks.mp4";
        config.outputs.csv = source.name() + "_landmarks.csv";
        std::fprintf(stderr, "no window in the C++ demo: writing %s and %s (choose the files with --out/--csv/--json)\n",
                     config.outputs.video.c_str(), config.outputs.csv.c_str());
    }
    std::string model = config.model.empty() ? default_model() : config.model;
    Card card = read_card(model);
    Landmarker landmarker(model, card, config.threads);
    std::map<int, std::vector<GivenBox>> given;
    std::unique_ptr<YuNetDetector> detector;
    if (!config.boxes.empty()) {
        given = read_boxes(config.boxes);
    } else {
        YuNetParams params;
        if (config.min_face) params.min_size = *config.min_face;
        params.scale = config.detector_scale;
        detector = std::make_unique<YuNetDetector>(yunet_path(config.detector), params, config.threads);
    }
    TrackerConfig tracker_config;
    tracker_config.smoothing = config.smooth;
    tracker_config.fps = source.fps();
    tracker_config.redetect_every = config.redetect_every;
    tracker_config.max_faces = config.max_faces;
    Tracker tracker(landmarker, detector.get(), tracker_config);

    bool stills = source.folder() && !config.frames;  // independent photographs: no track carries over
    int processed = 0, with_faces = 0, bad = 0;
    double smoothed_fps = 0, infer_total = 0, tracker_total = 0;
    auto started = std::chrono::steady_clock::now();
    Outputs outputs(config.outputs, source.fps(), card.num_points, source.folder() ? &source.image_names() : nullptr, stills);
    cv::Mat frame;
    std::optional<double> timestamp;
    while (source.next(frame, timestamp)) {
        if (stills) tracker.reset();
        FrameResult result = given.empty() && config.boxes.empty()
                                 ? tracker.process(frame, timestamp)
                                 : tracker.process_given(frame, given[processed], timestamp);
        infer_total += result.infer_seconds;
        tracker_total += result.seconds;
        if (!result.error.empty()) std::fprintf(stderr, "warning: frame %d skipped: %s\n", result.index, result.error.c_str());
        ++processed;
        with_faces += !result.faces.empty();
        bad += !result.error.empty();
        double instant = 1.0 / std::max(result.seconds, 1e-6);
        smoothed_fps = smoothed_fps == 0 ? instant : 0.9 * smoothed_fps + 0.1 * instant;
        bool usable = result.error.empty();
        cv::Mat image = frame;
        if (usable && frame.channels() == 1) cv::cvtColor(frame, image, cv::COLOR_GRAY2BGR);
        if (usable && frame.channels() == 4) cv::cvtColor(frame, image, cv::COLOR_BGRA2BGR);
        outputs.write(usable ? &image : nullptr, result, smoothed_fps);
        if (config.max_frames && processed >= config.max_frames) break;
    }
    if (processed && !with_faces) {  // decided before any file is committed: a failed run writes none
        if (tracker.non_finite_faces()) {
            throw EdgemarkError(model + ": the model gave NaN or infinite landmarks for all " + std::to_string(tracker.non_finite_faces()) +
                                " face(s) the detector found; the artifact is broken, not the footage: check it with "
                                "python -m export.verify, or re-export it");
        }
        if (!stills) {
            throw EdgemarkError(config.source + ": no face found in any of " + std::to_string(processed) +
                                " frames (detector '" + config.detector + "'); check the lighting, or try --min-face 0.05 for small faces");
        }
        std::fprintf(stderr, "warning: no face found in any of the %d images; each has a 'no face' row\n", processed);
    }
    if (std::getenv("EDGEMARK_PROFILE")) {
        std::fprintf(stderr, "profile: inference %.3f s, detector %.3f s, tracker total %.3f s\n", infer_total,
                     detector ? detector->seconds() : 0.0, tracker_total);
    }
    auto written = outputs.close();
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    std::printf("%d frames, a face in %d, %d bad, %.1f FPS overall\n", processed, with_faces, bad, processed / std::max(seconds, 1e-9));
    for (const auto& path : written) std::printf("wrote %s\n", path.c_str());
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_ERROR);
    // Debian's OpenCV parallelises with OpenMP, whose idle threads spin after each small warp or resize
    // and take the cores from OpenVINO's inference threads: the per-frame image work stays on one thread.
    cv::setNumThreads(1);
    try {
        return run(parse_arguments(argc, argv));
    } catch (const EdgemarkError& error) {
        std::fprintf(stderr, "error: %s\n", error.what());
        return error.exit_code();
    } catch (const fs::filesystem_error& error) {
        std::fprintf(stderr, "error: %s\n", first_line(error.what()).c_str());
        return 1;
    } catch (const std::exception& error) {
        std::fprintf(stderr, "error: %s\n", first_line(error.what()).c_str());
        return 1;
    }
}
