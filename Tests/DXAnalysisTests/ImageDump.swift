import DXAnalysis
import DXDecomposition
import Foundation

/// Test-side picture of a spine analysis, written when DEXA_DUMP_IMAGES names a directory: the
/// bone image (0–2 g/cm², grey), the axis (green), the disc lines (yellow) and each level's
/// sides (cyan), 4× enlarged. For looking, not for asserting.
enum ImageDump {
    static func spine(_ scan: DecomposedScan, _ m: SpineMeasurement?, name: String) {
        guard let dir = ProcessInfo.processInfo.environment["DEXA_DUMP_IMAGES"] else { return }
        let map = BoneMap(scan)
        let s = 4, w = map.columns * s, h = map.rows * s
        var rgb = [UInt8](repeating: 0, count: w * h * 3)
        func put(_ x: Int, _ y: Int, _ c: (UInt8, UInt8, UInt8)) {
            guard x >= 0, x < w, y >= 0, y < h else { return }
            let o = (y * w + x) * 3
            rgb[o] = c.0; rgb[o + 1] = c.1; rgb[o + 2] = c.2
        }
        for r in 0..<map.rows {
            for c in 0..<map.columns {
                let v = map[r, c]
                let col: (UInt8, UInt8, UInt8) = v.isFinite ? { let g = UInt8(max(0, min(255, v / 2 * 255))); return (g, g, g) }() : (90, 0, 0)
                for dy in 0..<s { for dx in 0..<s { put(c * s + dx, r * s + dy, col) } }
            }
        }
        func px(_ x: Double) -> Int { Int(((x - map.x0) / map.dx + 0.5) * Double(s)) }
        func py(_ y: Double) -> Int { Int(((y - map.y0) / map.dy + 0.5) * Double(s)) }
        if let m {
            for p in m.axis { put(px(p[0]), py(p[1]), (0, 220, 0)); put(px(p[0]) + 1, py(p[1]), (0, 220, 0)) }
            for v in m.vertebrae {
                for line in [v.upper, v.lower] {
                    var x = v.leftXMM - 5
                    while x <= v.rightXMM + 5 { put(px(x), py(line.y(atX: x)), (255, 210, 0)); x += 0.25 }
                }
                for x in [v.leftXMM - 5, v.rightXMM + 5] {
                    var y = v.upper.y(atX: x)
                    while y < v.lower.y(atX: x) { put(px(x), py(y), (0, 200, 255)); y += 0.25 }
                }
            }
        }
        if let png = try? PNG.encode(width: w, height: h, rgb: rgb) {
            try? Data(png).write(to: URL(fileURLWithPath: "\(dir)/\(name).png"))
        }
    }
}
