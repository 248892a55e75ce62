#include "card.hpp"

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "errors.hpp"

namespace edgemark {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

const char* const kReexport = "re-export the artifact (python -m export.onnx / export.openvino)";

// The format a card must name for a file with this suffix (runtime.backends.registry's suffix table).
std::string format_of(const fs::path& artifact) {
    auto suffix = artifact.extension().string();
    if (suffix == ".onnx") return "onnx";
    if (suffix == ".xml") return "openvino";
    return "";
}

template <typename T>
T field(const json& values, const char* name, const std::string& source) {
    if (!values.contains(name)) {
        throw EdgemarkError(source + ": card is incomplete (no '" + name + "'); " + kReexport);
    }
    try {
        return values.at(name).get<T>();
    } catch (const json::exception&) {
        throw EdgemarkError(source + ": card field '" + name + "' has the wrong type (" + values.at(name).dump() +
                            "); " + kReexport);
    }
}

template <typename T>
T field_or(const json& values, const char* name, T fallback, const std::string& source) {
    if (!values.contains(name) || values.at(name).is_null()) return fallback;
    return field<T>(values, name, source);
}

void check(bool condition, const std::string& source, const std::string& what) {
    if (!condition) throw EdgemarkError(source + ": " + what + "; " + kReexport);
}

}  // namespace

Card card_from_json(const std::string& text, const std::string& source) {
    json values;
    try {
        values = json::parse(text);
    } catch (const json::parse_error& error) {
        throw EdgemarkError(source + ": card is not valid JSON (" + first_line(error.what()) + "); " + kReexport);
    }
    check(values.is_object(), source, "card is not a JSON object");
    Card card;
    card.json_text = text;
    card.layout = field<std::string>(values, "layout", source);
    card.num_points = field<int>(values, "num_points", source);
    card.input_size = field<int>(values, "input_size", source);
    card.input_name = field_or<std::string>(values, "input_name", "input", source);
    card.output_kind = field<std::string>(values, "output_kind", source);
    card.decode = field_or<std::string>(values, "decode", "centroid", source);
    card.heatmap_stride = field_or<int>(values, "heatmap_stride", 0, source);
    card.precision = field_or<std::string>(values, "precision", "fp32", source);
    card.format = field_or<std::string>(values, "format", "onnx", source);

    auto normalisation = field<json>(values, "normalisation", source);
    card.normalisation.channel_order = field<std::string>(normalisation, "channel_order", source);
    card.normalisation.mean = field<std::array<float, 3>>(normalisation, "mean", source);
    card.normalisation.std = field<std::array<float, 3>>(normalisation, "std", source);

    auto crop = field<json>(values, "crop_rule", source);
    card.crop_rule.box = field_or<std::string>(crop, "box", "landmarks", source);
    card.crop_rule.scale = field_or<double>(crop, "scale", 1.25, source);
    card.crop_rule.shift_y = field_or<double>(crop, "shift_y", 0.0, source);
    if (crop.contains("scale_y") && !crop.at("scale_y").is_null()) card.crop_rule.scale_y = field<double>(crop, "scale_y", source);

    if (values.contains("heatmap_offsets") && !values.at("heatmap_offsets").is_null()) {
        auto spec = values.at("heatmap_offsets");
        HeatmapOffsets offsets;
        offsets.grid_size = field<int>(spec, "grid_size", source);
        offsets.cell_spacing = field<double>(spec, "cell_spacing", source);
        offsets.offset_scale = field<double>(spec, "offset_scale", source);
        offsets.channel_groups = field_or<std::array<std::string, 3>>(spec, "channel_groups", offsets.channel_groups, source);
        offsets.offset_transform = field_or<std::string>(spec, "offset_transform", "identity", source);
        offsets.offset_divisor = field_or<double>(spec, "offset_divisor", 1.0, source);
        card.heatmap_offsets = offsets;
    }
    if (values.contains("coords_slice") && !values.at("coords_slice").is_null()) {
        card.coords_slice = field<std::array<int, 2>>(values, "coords_slice", source);
    }
    // `batch` and `output_name`: top-level fields, or in `extra` on cards written before they were.
    json extra = values.contains("extra") && values.at("extra").is_object() ? values.at("extra") : json::object();
    for (const json* holder : {&values, &extra}) {
        if (!card.batch && holder->contains("batch") && holder->at("batch").is_number_integer()) {
            card.batch = holder->at("batch").get<int>();
        }
        if (card.output_name.empty() && holder->contains("output_name") && holder->at("output_name").is_string()) {
            card.output_name = holder->at("output_name").get<std::string>();
        }
    }

    // The checks of runtime.card.Card.__post_init__ and its parts.
    check(card.num_points > 0, source, "num_points must be positive");
    check(card.input_size > 0, source, "input_size must be positive");
    check(card.output_kind == "heatmap" || card.output_kind == "coords" || card.output_kind == "heatmap_offsets", source,
          "output kind '" + card.output_kind + "' is not one of heatmap, coords, heatmap_offsets");
    check(card.output_kind != "heatmap" || card.heatmap_stride > 0, source,
          "a heatmap card needs heatmap_stride (input pixels per heatmap pixel)");
    check(card.output_kind != "heatmap" || card.decode == "centroid" || card.decode == "argmax" || card.decode == "soft_argmax",
          source, "heatmap decode '" + card.decode + "' is not one of argmax, centroid, soft_argmax");
    check((card.output_kind == "heatmap_offsets") == card.heatmap_offsets.has_value(), source,
          "a heatmap_offsets card needs 'heatmap_offsets', and only such a card has it");
    if (card.heatmap_offsets) {
        const auto& offsets = *card.heatmap_offsets;
        check(offsets.grid_size >= 1 && offsets.cell_spacing > 0 && offsets.offset_scale > 0 && offsets.offset_divisor > 0,
              source, "heatmap offsets need grid_size >= 1 and positive cell_spacing, offset_scale and offset_divisor");
        check(offsets.offset_transform == "identity" || offsets.offset_transform == "logit", source,
              "offset transform '" + offsets.offset_transform + "' is not one of identity, logit");
        for (const char* group : {"heatmap", "x_offset", "y_offset"}) {
            int count = 0;
            for (const auto& name : offsets.channel_groups) count += name == group;
            check(count == 1, source, "offset channel groups must order each of heatmap, x_offset, y_offset once");
        }
    }
    if (card.coords_slice) {
        auto [start, stop] = *card.coords_slice;
        check(card.output_kind == "coords" && start >= 0 && stop - start == 2 * card.num_points, source,
              "coords_slice must select the 2K values of K (x, y) pairs in a coords output");
    }
    const auto& order = card.normalisation.channel_order;
    check(order == "RGB" || order == "BGR", source, "channel order must be RGB or BGR, got '" + order + "'");
    for (float value : card.normalisation.std) check(value > 0, source, "normalisation std must be positive");
    const auto& box = card.crop_rule.box;
    check(box == "landmarks" || box == "detector", source, "crop rule box '" + box + "' is not one of landmarks, detector");
    check(card.crop_rule.scale > 0 && (!card.crop_rule.scale_y || *card.crop_rule.scale_y > 0), source,
          "crop scales must be positive");
    check(card.precision == "fp32" || card.precision == "fp16" || card.precision == "int8", source,
          "precision '" + card.precision + "' is not one of fp32, fp16, int8");
    return card;
}

Card read_card(const std::string& artifact_name) {
    fs::path artifact(artifact_name);
    if (!fs::is_regular_file(artifact)) {
        throw EdgemarkError(artifact_name + ": no such model file; expected an artifact with a card (.onnx or .xml + .bin)");
    }
    auto format = format_of(artifact);
    if (format.empty()) {
        throw UsageError(artifact_name + ": the C++ demo runs .onnx and OpenVINO .xml artifacts (on OpenVINO); got '" +
                         artifact.extension().string() + "'");
    }
    fs::path sidecar = artifact;
    sidecar += ".json";
    std::ifstream stream(sidecar);
    if (!stream) {
        throw EdgemarkError(artifact_name + ": no card found (looked for " + sidecar.filename().string() +
                            "); export it with edgemark or import a third-party model with `python -m export.onnx --import ...`");
    }
    std::stringstream text;
    text << stream.rdbuf();
    Card card = card_from_json(text.str(), sidecar.string());
    if (card.format != format) {
        throw EdgemarkError(sidecar.string() + ": the card is for a '" + card.format + "' artifact but " +
                            artifact.filename().string() + " is " + format + "; use the card written with this file");
    }
    return card;
}

}  // namespace edgemark
