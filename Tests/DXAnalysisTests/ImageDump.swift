@testable import DXAnalysis
import DXDecomposition
import Foundation

/// Test-side picture of a spine analysis, written when DEXA_DUMP_IMAGES names a directory: the
/// bone image (0–2 g/cm², grey), the axis (green), the disc lines (yellow) and each level's
/// sides (cyan), 4× enlarged. For looking, not for asserting.
enum ImageDump {
    static func spine(_ scan: DecomposedScan, _ m: SpineMeasurement?, name: String) {
        guard let dir = ProcessInfo.processInfo.environment["DEXA_DUMP_IMAGES"] else { return }
        let map = BoneMap(scan)
        var image = Raster(map)
        let s = image.scale, w = image.width, h = image.height
        func put(_ x: Int, _ y: Int, _ c: (UInt8, UInt8, UInt8)) { image.put(x, y, c) }
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
        if let png = try? PNG.encode(width: w, height: h, rgb: image.rgb) {
            try? Data(png).write(to: URL(fileURLWithPath: "\(dir)/\(name).png"))
        }
    }

    /// A hip: the bone image with the ROIs tinted (neck red, trochanter green, intertrochanter
    /// blue), Ward's square magenta, the neck box yellow, the head's circle cyan, the lines white.
    static func hip(_ scan: DecomposedScan, _ m: HipMeasurement?, name: String) {
        guard let dir = ProcessInfo.processInfo.environment["DEXA_DUMP_IMAGES"] else { return }
        let map = BoneMap(scan)
        var image = Raster(map)
        let s = image.scale, w = image.width, h = image.height
        func put(_ x: Int, _ y: Int, _ c: (UInt8, UInt8, UInt8)) { image.put(x, y, c) }
        var tint = [Int: (Double, Double, Double)]()
        for (roi, colour) in [("intertrochanter", (0.6, 0.7, 1.0)), ("trochanter", (0.6, 1.0, 0.6)), ("neck", (1.0, 0.6, 0.6))] {
            for i in m?.pixels[roi] ?? [] { tint[i] = colour }
        }
        for r in 0..<map.rows {
            for c in 0..<map.columns {
                let v = map[r, c]
                var col: (UInt8, UInt8, UInt8) = (90, 0, 0)
                if v.isFinite {
                    let g = max(0, min(255, Double(v) / 2 * 255))
                    let t = tint[r * map.columns + c] ?? (1, 1, 1)
                    col = (UInt8(g * t.0), UInt8(g * t.1), UInt8(g * t.2))
                }
                for dy in 0..<s { for dx in 0..<s { put(c * s + dx, r * s + dy, col) } }
            }
        }
        func px(_ x: Double) -> Int { Int(((x - map.x0) / map.dx + 0.5) * Double(s)) }
        func py(_ y: Double) -> Int { Int(((y - map.y0) / map.dy + 0.5) * Double(s)) }
        func line(_ a: TablePoint, _ b: TablePoint, _ c: (UInt8, UInt8, UInt8)) {
            let n = Int(hypot(b.xMM - a.xMM, b.yMM - a.yMM) * 4) + 1
            for k in 0...n {
                let t = Double(k) / Double(n)
                put(px(a.xMM + t * (b.xMM - a.xMM)), py(a.yMM + t * (b.yMM - a.yMM)), c)
            }
        }
        func polygon(_ p: [TablePoint], _ c: (UInt8, UInt8, UInt8)) {
            for (i, a) in p.enumerated() { line(a, p[(i + 1) % p.count], c) }
        }
        if let m {
            polygon(m.neckBox, (255, 220, 0))
            if let wards = m.wardsBox { polygon(wards, (255, 0, 255)) }
            for l in [m.medialCut, m.bottomCut ?? [], m.trochanterLine ?? []] where l.count == 2 { line(l[0], l[1], (255, 255, 255)) }
            line(m.shaftTop, m.shaftBottom, (0, 220, 0))
            for k in 0..<360 {
                let t = Double(k) * .pi / 180
                put(px(m.headCentre.xMM + m.headRadiusMM * cos(t)), py(m.headCentre.yMM + m.headRadiusMM * sin(t)), (0, 220, 255))
            }
            line(TablePoint(m.neckWaist.xMM - 40 * m.neckDirection.xMM, m.neckWaist.yMM - 40 * m.neckDirection.yMM),
                 TablePoint(m.neckWaist.xMM + 30 * m.neckDirection.xMM, m.neckWaist.yMM + 30 * m.neckDirection.yMM), (0, 220, 0))
        }
        if let png = try? PNG.encode(width: w, height: h, rgb: image.rgb) {
            try? Data(png).write(to: URL(fileURLWithPath: "\(dir)/\(name).png"))
        }
    }
}

/// An RGB picture of a bone map, `scale` pixels per image pixel.
extension ImageDump {
    /// A lateral spine: the bone image, each body's six points (green: grade 0, yellow 1,
    /// orange 2, red 3, blue unreadable) joined posterior to anterior.
    static func vfa(_ scan: DecomposedScan, _ m: VFAMeasurement?, name: String) {
        guard let dir = ProcessInfo.processInfo.environment["DEXA_DUMP_IMAGES"] else { return }
        let map = BoneMap(scan)
        var image = Raster(map)
        let s = image.scale
        for r in 0..<map.rows {
            for c in 0..<map.columns {
                let v = map[r, c]
                let col: (UInt8, UInt8, UInt8) = v.isFinite ? { let g = UInt8(max(0, min(255, v / 1.5 * 255))); return (g, g, g) }() : (90, 0, 0)
                for dy in 0..<s { for dx in 0..<s { image.put(c * s + dx, r * s + dy, col) } }
            }
        }
        func px(_ x: Double) -> Int { Int(((x - map.x0) / map.dx + 0.5) * Double(s)) }
        func py(_ y: Double) -> Int { Int(((y - map.y0) / map.dy + 0.5) * Double(s)) }
        let colours: [(UInt8, UInt8, UInt8)] = [(0, 220, 0), (255, 230, 0), (255, 140, 0), (255, 0, 0)]
        for v in m?.vertebrae ?? [] where v.points.count == 6 {
            let col = v.readable ? colours[min(3, v.grade ?? 0)] : (0, 120, 255)
            for k in [0, 3] {
                for t in stride(from: 0.0, through: 1.0, by: 0.01) {
                    let a = v.points[k + (t < 0.5 ? 0 : 1)], b = v.points[k + (t < 0.5 ? 1 : 2)]
                    let u = t < 0.5 ? t * 2 : t * 2 - 1
                    image.put(px(a[0] + (b[0] - a[0]) * u), py(a[1] + (b[1] - a[1]) * u), col)
                }
            }
            for p in v.points { for d in -2...2 { image.put(px(p[0]) + d, py(p[1]), col); image.put(px(p[0]), py(p[1]) + d, col) } }
        }
        if let png = try? PNG.encode(width: image.width, height: image.height, rgb: image.rgb) {
            try? Data(png).write(to: URL(fileURLWithPath: "\(dir)/\(name).png"))
        }
        // What the bodies are found and read on: the smoothed image less its background.
        let lateral = LateralImage(map, noise: 0.02)
        var above = Raster(map)
        for r in 0..<map.rows {
            for c in 0..<map.columns {
                let v = lateral.at(r, c)
                let col: (UInt8, UInt8, UInt8) = v.isFinite ? { let g = UInt8(max(0, min(255, v / 1.5 * 255))); return (g, g, g) }() : (90, 0, 0)
                for dy in 0..<s { for dx in 0..<s { above.put(c * s + dx, r * s + dy, col) } }
            }
        }
        if let png = try? PNG.encode(width: above.width, height: above.height, rgb: above.rgb) {
            try? Data(png).write(to: URL(fileURLWithPath: "\(dir)/\(name)-above-background.png"))
        }
    }
}

struct Raster {
    let scale = 4
    let width: Int
    let height: Int
    var rgb: [UInt8]

    init(_ map: BoneMap) {
        width = map.columns * scale
        height = map.rows * scale
        rgb = [UInt8](repeating: 0, count: width * height * 3)
    }

    mutating func put(_ x: Int, _ y: Int, _ c: (UInt8, UInt8, UInt8)) {
        guard x >= 0, x < width, y >= 0, y < height else { return }
        let o = (y * width + x) * 3
        rgb[o] = c.0; rgb[o + 1] = c.1; rgb[o + 2] = c.2
    }
}
