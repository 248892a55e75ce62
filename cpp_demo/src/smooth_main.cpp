// edgemark_smooth: smooth a tracker CSV's landmarks with runtime.smoothing's filters, at full precision.
//
//   edgemark_smooth raw.csv smoothed.csv --smooth one_euro --fps 30
//
// Each face id is one track; frame N's timestamp is N / fps, as the tracker gives a video's frames.
// The output has the input's columns, with the points printed to 17 significant digits: the check
// of the C++ filters against Python's on a recorded sequence.
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "errors.hpp"
#include "smoothing.hpp"

using namespace edgemark;

int main(int argc, char** argv) {
    try {
        std::vector<std::string> arguments(argv + 1, argv + argc);
        std::string input, output, name = "one_euro";
        double fps = 30.0;
        for (size_t i = 0; i < arguments.size(); ++i) {
            if (arguments[i] == "--smooth" && i + 1 < arguments.size()) name = arguments[++i];
            else if (arguments[i] == "--fps" && i + 1 < arguments.size()) fps = std::stod(arguments[++i]);
            else if (input.empty()) input = arguments[i];
            else if (output.empty()) output = arguments[i];
            else throw UsageError("usage: edgemark_smooth IN.csv OUT.csv [--smooth one_euro] [--fps 30]");
        }
        if (output.empty()) throw UsageError("usage: edgemark_smooth IN.csv OUT.csv [--smooth one_euro] [--fps 30]");
        std::ifstream in(input);
        if (!in) throw EdgemarkError(input + ": cannot read this file");
        std::ofstream out(output);
        std::string line;
        std::getline(in, line);
        if (line.rfind("frame,face_id,confidence,x0,y0", 0) != 0) {
            throw EdgemarkError(input + ": expected a tracker CSV (frame,face_id,confidence,x0,y0,...) of a video");
        }
        if (!line.empty() && line.back() == '\r') line.pop_back();
        out << line << "\n";
        std::map<int, std::unique_ptr<Smoother>> smoothers;
        while (std::getline(in, line)) {
            if (!line.empty() && line.back() == '\r') line.pop_back();
            if (line.empty()) continue;
            std::vector<std::string> fields;
            std::stringstream row(line);
            for (std::string field; std::getline(row, field, ',');) fields.push_back(field);
            int frame = std::stoi(fields[0]), face_id = std::stoi(fields[1]);
            Points points;
            for (size_t i = 3; i + 1 < fields.size(); i += 2) points.emplace_back(std::stod(fields[i]), std::stod(fields[i + 1]));
            auto& smoother = smoothers[face_id];
            if (!smoother) smoother = make_smoother(name, fps);
            Points smoothed = smoother->smooth(points, frame / fps, face_size(points));
            out << fields[0] << "," << fields[1] << "," << fields[2];
            char text[64];
            for (const auto& point : smoothed) {
                std::snprintf(text, sizeof(text), ",%.17g,%.17g", point.x, point.y);
                out << text;
            }
            out << "\n";
        }
        return 0;
    } catch (const EdgemarkError& error) {
        std::fprintf(stderr, "error: %s\n", error.what());
        return error.exit_code();
    } catch (const std::exception& error) {
        std::fprintf(stderr, "error: %s\n", first_line(error.what()).c_str());
        return 1;
    }
}
