#include "landmarker.hpp"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>

#include <nlohmann/json.hpp>
#include <opencv2/imgproc.hpp>

#include "errors.hpp"

namespace edgemark {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr int kCentroidRadius = 4;     // runtime.heatmap.centroid's default
constexpr double kSoftArgmaxBeta = 50.0;
constexpr double kLogitEpsilon = 1e-7;  // runtime.heatmap._LOGIT_EPSILON

std::string shape_text(const std::vector<size_t>& shape) {
    std::string text = "(";
    for (size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
    return text + (shape.size() == 1 ? ",)" : ")");
}

// Heatmap peak (argmax, first of equal maxima) of one (H, W) map: flat index and value.
std::pair<size_t, float> peak_of(const float* map, size_t count) {
    size_t best = 0;
    for (size_t i = 1; i < count; ++i) {
        if (map[i] > map[best]) best = i;
    }
    return {best, map[best]};
}

// Sub-pixel x, y of one map (runtime.heatmap: argmax, centroid, soft_argmax), rounded to float32 as there.
cv::Point2f decode_map(const float* map, int height, int width, const std::string& method) {
    auto [index, peak] = peak_of(map, static_cast<size_t>(height) * width);
    int peak_x = static_cast<int>(index % width), peak_y = static_cast<int>(index / width);
    if (method == "argmax") return {static_cast<float>(peak_x), static_cast<float>(peak_y)};
    if (method == "soft_argmax") {
        double top = -std::numeric_limits<double>::infinity();
        for (int i = 0; i < height * width; ++i) top = std::max(top, kSoftArgmaxBeta * map[i]);
        double total = 0, sum_x = 0, sum_y = 0;
        std::vector<double> column(width, 0.0), row(height, 0.0);
        for (int y = 0; y < height; ++y) {
            for (int x = 0; x < width; ++x) {
                double probability = std::exp(kSoftArgmaxBeta * map[y * width + x] - top);
                total += probability;
                column[x] += probability;
                row[y] += probability;
            }
        }
        for (int x = 0; x < width; ++x) sum_x += column[x] / total * x;
        for (int y = 0; y < height; ++y) sum_y += row[y] / total * y;
        return {static_cast<float>(sum_x), static_cast<float>(sum_y)};
    }
    // centroid: mean position weighted by the non-negative map in a (2r + 1)^2 window, clipped at the borders.
    double total = 0, sum_x = 0, sum_y = 0;
    for (int y = std::max(0, peak_y - kCentroidRadius); y <= std::min(height - 1, peak_y + kCentroidRadius); ++y) {
        for (int x = std::max(0, peak_x - kCentroidRadius); x <= std::min(width - 1, peak_x + kCentroidRadius); ++x) {
            double weight = std::max(static_cast<double>(map[y * width + x]), 0.0);
            total += weight;
            sum_x += weight * x;
            sum_y += weight * y;
        }
    }
    if (!(total > 0)) return {static_cast<float>(peak_x), static_cast<float>(peak_y)};
    return {static_cast<float>(sum_x / total), static_cast<float>(sum_y / total)};
}

float clip01(float value) { return std::min(std::max(value, 0.0f), 1.0f); }

}  // namespace

void decode_output(const Output& output, const Card& card, std::vector<Points>& points,
                   std::vector<std::vector<float>>& confidences) {
    const auto& shape = output.shape;
    size_t count = shape.empty() ? 0 : shape[0];
    size_t k = card.num_points;
    points.assign(count, Points(k));
    confidences.assign(count, std::vector<float>(k, kNaN));
    if (card.output_kind == "coords") {
        size_t start = card.coords_slice ? (*card.coords_slice)[0] : 0;
        size_t stop = card.coords_slice ? (*card.coords_slice)[1] : 2 * k;
        size_t per_face = count ? output.values.size() / count : stop;
        if (per_face < stop || (!card.coords_slice && per_face != stop)) {
            throw EdgemarkError("model output is " + shape_text(shape) + " but the card says " + std::to_string(k) +
                                " (x, y) coords per face");
        }
        for (size_t face = 0; face < count; ++face) {
            const float* values = output.values.data() + face * per_face + start;
            for (size_t i = 0; i < k; ++i) {
                points[face][i] = {static_cast<double>(values[2 * i]) * card.input_size - 0.5,
                                   static_cast<double>(values[2 * i + 1]) * card.input_size - 0.5};
            }
        }
        return;
    }
    if (card.output_kind == "heatmap_offsets") {
        const auto& spec = *card.heatmap_offsets;
        size_t grid = spec.grid_size;
        if (shape.size() != 4 || shape[1] != 3 * k || shape[2] != grid || shape[3] != grid) {
            throw EdgemarkError("model output is " + shape_text(shape) + " but the card says (N, " + std::to_string(3 * k) +
                                ", " + std::to_string(grid) + ", " + std::to_string(grid) + ") heatmaps with x and y offset maps");
        }
        size_t cells = grid * grid;
        int group_of[3] = {0, 0, 0};  // heatmap, x_offset, y_offset -> position in the channel groups
        for (int position = 0; position < 3; ++position) {
            const auto& name = spec.channel_groups[position];
            group_of[name == "heatmap" ? 0 : name == "x_offset" ? 1 : 2] = position;
        }
        for (size_t face = 0; face < count; ++face) {
            const float* base = output.values.data() + face * 3 * k * cells;
            for (size_t i = 0; i < k; ++i) {
                auto [cell, peak] = peak_of(base + (group_of[0] * k + i) * cells, cells);
                double offset[2];
                for (int axis = 0; axis < 2; ++axis) {
                    double value = base[(group_of[1 + axis] * k + i) * cells + cell];
                    if (spec.offset_transform == "logit") {
                        value = std::min(std::max(value, kLogitEpsilon), 1.0 - kLogitEpsilon);
                        value = std::log(value / (1.0 - value));
                    }
                    offset[axis] = value * spec.offset_scale / spec.offset_divisor;
                }
                double row = static_cast<double>(cell / grid), column = static_cast<double>(cell % grid);
                points[face][i] = {column * spec.cell_spacing + offset[0], row * spec.cell_spacing + offset[1]};
                confidences[face][i] = clip01(peak);
            }
        }
        return;
    }
    if (shape.size() != 4 || shape[1] != k) {
        throw EdgemarkError("model output is " + shape_text(shape) + " but the card says (N, " + std::to_string(k) +
                            ", H, W) heatmaps");
    }
    int height = static_cast<int>(shape[2]), width = static_cast<int>(shape[3]);
    double stride = card.heatmap_stride;
    for (size_t face = 0; face < count; ++face) {
        for (size_t i = 0; i < k; ++i) {
            const float* map = output.values.data() + (face * k + i) * height * width;
            cv::Point2f coords = decode_map(map, height, width, card.decode);
            // runtime.heatmap.heatmap_to_input: heatmap pixel centres -> input pixel centres.
            points[face][i] = {coords.x * stride + (stride - 1) / 2.0, coords.y * stride + (stride - 1) / 2.0};
            confidences[face][i] = clip01(peak_of(map, static_cast<size_t>(height) * width).second);
        }
    }
}

void normalise_crop(const cv::Mat& crop_bgr, const Normalisation& normalisation, float* destination) {
    // The same float32 operations as runtime.crop._normalisation_tables, looked up per pixel.
    float tables[3][256];
    for (int channel = 0; channel < 3; ++channel) {
        for (int level = 0; level < 256; ++level) {
            tables[channel][level] = (static_cast<float>(level) / 255.0f - normalisation.mean[channel]) / normalisation.std[channel];
        }
    }
    bool rgb = normalisation.channel_order == "RGB";
    size_t plane = static_cast<size_t>(crop_bgr.rows) * crop_bgr.cols;
    for (int y = 0; y < crop_bgr.rows; ++y) {
        const uint8_t* row = crop_bgr.ptr<uint8_t>(y);
        for (int x = 0; x < crop_bgr.cols; ++x) {
            size_t at = static_cast<size_t>(y) * crop_bgr.cols + x;
            for (int channel = 0; channel < 3; ++channel) {
                int source = rgb ? 2 - channel : channel;
                destination[channel * plane + at] = tables[channel][row[3 * x + source]];
            }
        }
    }
}

ov::AnyMap compile_config(const std::string& precision, int threads) {
    ov::AnyMap config{ov::hint::performance_mode(ov::hint::PerformanceMode::LATENCY), ov::num_streams(1)};
    if (threads > 0) config.emplace(ov::inference_num_threads(threads));
    if (precision == "fp32") config.emplace(ov::hint::inference_precision(ov::element::f32));
    return config;
}

Landmarker::Landmarker(const std::string& artifact, const Card& card, int threads) : card_(card), artifact_(artifact) {
    std::shared_ptr<ov::Model> model;
    try {
        model = core_.read_model(artifact);
    } catch (const std::exception& error) {
        throw EdgemarkError(artifact + ": OpenVINO cannot load it on CPU (" + first_line(error.what()) + ")");
    }
    if (model->has_rt_info("edgemark", "card")) {  // an IR's embedded card is the authority (runtime.card.read_card)
        auto embedded = nlohmann::json::parse(model->get_rt_info<std::string>("edgemark", "card"), nullptr, false);
        if (embedded != nlohmann::json::parse(card.json_text, nullptr, false)) {
            throw EdgemarkError(artifact + ".json disagrees with the card inside " + artifact +
                                "; the embedded card is the authority: delete the .json (or re-export) and run again");
        }
    }
    if (model->inputs().size() != 1) {
        throw EdgemarkError(artifact + ": expected one image input, found " + std::to_string(model->inputs().size()));
    }
    const auto& outputs = model->outputs();
    for (size_t index = 0; index < outputs.size() && !card.output_name.empty(); ++index) {
        if (outputs[index].get_names().count(card.output_name)) output_index_ = index;
    }
    auto input_shape = model->input().get_partial_shape();
    if (input_shape.rank().is_static() && input_shape.rank().get_length() == 4 && input_shape[0].is_static()) {
        fixed_batch_ = static_cast<int>(input_shape[0].get_length());
    } else if (card.batch && *card.batch == 1) {
        fixed_batch_ = 1;
    }
    auto config = compile_config(card.precision, threads);
    auto compile = [&](const std::shared_ptr<ov::Model>& which) {
        try {
            return core_.compile_model(which, "CPU", config);
        } catch (const std::exception& error) {
            if (card.precision == "fp32") throw EdgemarkError(artifact + ": OpenVINO cannot load it on CPU (" + first_line(error.what()) + ")");
            // As the Python backend: an INT8 IR that has no kernels in bf16 runs in f32 rather than not at all.
            config.emplace(ov::hint::inference_precision(ov::element::f32));
            try {
                return core_.compile_model(which, "CPU", config);
            } catch (const std::exception& retry) {
                throw EdgemarkError(artifact + ": OpenVINO cannot load it on CPU (" + first_line(retry.what()) + ")");
            }
        }
    };
    compiled_ = compile(model);
    request_ = compiled_.create_infer_request();
    if (!fixed_batch_ && input_shape.rank().is_static()) {
        // A tracker feeds one face per frame: a batch-1 compilation picks its kernels once (the Python backend's
        // _single_face_request). Batches of several faces use the dynamic model.
        try {
            auto single = core_.read_model(artifact);
            ov::PartialShape shape = input_shape;
            shape[0] = 1;
            single->reshape(shape);
            single_request_ = std::make_unique<ov::InferRequest>(compile(single).create_infer_request());
        } catch (const std::exception& error) {
            if (std::getenv("EDGEMARK_PROFILE")) std::fprintf(stderr, "no batch-1 compilation: %s\n", first_line(error.what()).c_str());
            single_request_.reset();  // an optimisation only: the dynamic model still runs
        }
    }
}

Output Landmarker::run_request(ov::InferRequest& request, float* inputs, size_t count) {
    size_t size = card_.input_size;
    ov::Tensor tensor(ov::element::f32, ov::Shape{count, 3, size, size}, inputs);
    request.set_input_tensor(tensor);
    request.infer();
    ov::Tensor result = request.get_output_tensor(output_index_);
    Output output;
    output.shape = result.get_shape();
    if (result.get_element_type() == ov::element::f32) {
        const float* data = result.data<const float>();
        output.values.assign(data, data + result.get_size());
    } else {
        throw EdgemarkError(artifact_ + ": the landmark output is " + result.get_element_type().get_type_name() +
                            "; expected f32");
    }
    return output;
}

Output Landmarker::run(std::vector<float>& inputs, size_t count, double* infer_seconds) {
    auto started = std::chrono::steady_clock::now();
    size_t per_face = 3 * static_cast<size_t>(card_.input_size) * card_.input_size;
    Output output;
    try {
        if (!fixed_batch_) {
            auto& request = count == 1 && single_request_ ? *single_request_ : request_;
            output = run_request(request, inputs.data(), count);
        } else {
            // A fixed batch B: chunks of B, the last one zero-padded.
            size_t batch = fixed_batch_;
            std::vector<float> padded(batch * per_face);
            for (size_t start = 0; start < count; start += batch) {
                size_t chunk = std::min(batch, count - start);
                std::fill(padded.begin(), padded.end(), 0.0f);
                std::copy(inputs.begin() + start * per_face, inputs.begin() + (start + chunk) * per_face, padded.begin());
                Output part = run_request(request_, padded.data(), batch);
                size_t part_per_face = part.values.size() / batch;
                if (output.shape.empty()) {
                    output.shape = part.shape;
                    output.shape[0] = 0;
                }
                output.values.insert(output.values.end(), part.values.begin(), part.values.begin() + chunk * part_per_face);
                output.shape[0] += chunk;
            }
        }
    } catch (const ov::Exception& error) {
        throw EdgemarkError(artifact_ + ": OpenVINO failed to run it (" + first_line(error.what()) + ")");
    }
    if (infer_seconds) *infer_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    return output;
}

std::vector<FaceLandmarks> Landmarker::predict(const cv::Mat& frame_bgr, const std::vector<Box>& boxes,
                                               const std::string& box_kind, const BoxConversion& conversion,
                                               double* infer_seconds) {
    std::vector<FaceLandmarks> faces;
    if (boxes.empty()) return faces;
    int size = card_.input_size;
    size_t per_face = 3 * static_cast<size_t>(size) * size;
    std::vector<float> inputs(boxes.size() * per_face);
    std::vector<cv::Mat> inverses;
    for (size_t face = 0; face < boxes.size(); ++face) {
        Box box = boxes[face];
        if (box_kind != card_.crop_rule.box) {
            box = card_.crop_rule.box == "landmarks" ? conversion.detector_to_landmarks(box) : conversion.landmarks_to_detector(box);
        }
        cv::Mat matrix = crop_matrix(box, card_.crop_rule, size), crop, inverse;
        cv::warpAffine(frame_bgr, crop, matrix, cv::Size(size, size), cv::INTER_LINEAR, cv::BORDER_CONSTANT, cv::Scalar(0, 0, 0));
        normalise_crop(crop, card_.normalisation, inputs.data() + face * per_face);
        cv::invertAffineTransform(matrix, inverse);
        inverses.push_back(inverse);
    }
    Output output = run(inputs, boxes.size(), infer_seconds);
    std::vector<Points> points;
    std::vector<std::vector<float>> confidences;
    decode_output(output, card_, points, confidences);
    for (size_t face = 0; face < boxes.size(); ++face) {
        const double* a = inverses[face].ptr<double>(0);
        const double* b = inverses[face].ptr<double>(1);
        FaceLandmarks landmarks;
        for (const auto& point : points[face]) {
            landmarks.points.emplace_back(point.x * a[0] + point.y * a[1] + a[2], point.x * b[0] + point.y * b[1] + b[2]);
        }
        landmarks.point_confidence = confidences[face];
        if (card_.output_kind == "coords") {
            landmarks.face_confidence = kNaN;
        } else {
            double total = 0;
            for (float value : landmarks.point_confidence) total += value;
            landmarks.face_confidence = static_cast<float>(total / landmarks.point_confidence.size());
        }
        faces.push_back(std::move(landmarks));
    }
    return faces;
}

}  // namespace edgemark
