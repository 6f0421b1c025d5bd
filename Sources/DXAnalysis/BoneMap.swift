import DXDecomposition
import Foundation

/// A decomposed scan as an analysis reads it: rows ordered head to foot (y increasing,
/// whichever way the scan ran), columns across the table (x increasing, the patient's left),
/// every position in millimetres on the table. Pure value; no I/O.
public struct BoneMap: Sendable {
    public let columns: Int
    public let rows: Int
    /// Column and row spacing, mm (both positive).
    public let dx: Double
    public let dy: Double
    /// Table position of column 0 and row 0.
    public let x0: Double
    public let y0: Double
    /// Bone mineral, g/cm²; NaN where the scan has no number.
    public let bone: [Float]
    /// No number for want of photons under tissue (metal): the decomposer's unmeasured mark,
    /// not saturated, on a pixel with tissue on both sides in its row.
    public let opaque: [Bool]
    /// No number because a window saturated (too many photons: thin tissue).
    public let saturated: [Bool]
    /// Rows whose line arrived.
    public let rowPresent: [Bool]
    /// Soft tissue, g/cm² (under bone, the tissue carried beside it); NaN where there is none.
    public let softTissue: [Float]

    public init(_ scan: DecomposedScan) {
        let g = scan.geometry
        columns = g.channels
        rows = g.lines
        dx = g.pitchMM
        dy = abs(g.lineStepMM)
        let flip = g.lineStepMM < 0
        x0 = g.x(column: 0)
        y0 = flip ? g.y(row: g.lines - 1) : g.y(row: 0)
        var b = [Float](repeating: .nan, count: columns * rows)
        var o = [Bool](repeating: false, count: columns * rows)
        var sat = [Bool](repeating: false, count: columns * rows)
        var soft = [Float](repeating: .nan, count: columns * rows)
        var present = [Bool](repeating: false, count: rows)
        for r in 0..<rows {
            let source = flip ? rows - 1 - r : r
            present[r] = scan.rowPresent[source]
            // Tissue on both sides: the first and last columns with a number.
            let base = source * columns
            var first = -1, last = -1
            for c in 0..<columns where scan.bone[base + c].isFinite {
                if first < 0 { first = c }
                last = c
            }
            for c in 0..<columns {
                let v = scan.bone[base + c]
                b[r * columns + c] = v
                if base + c < scan.softTissue.count { soft[r * columns + c] = scan.softTissue[base + c] }
                let marks = scan.marks[base + c]
                o[r * columns + c] = present[r] && !v.isFinite && c > first && c < last && marks.contains(.unmeasured) && !marks.contains(.saturated)
                sat[r * columns + c] = present[r] && marks.contains(.saturated)
            }
        }
        bone = b
        opaque = o
        saturated = sat
        softTissue = soft
        rowPresent = present
    }

    public func x(_ column: Int) -> Double { x0 + Double(column) * dx }
    public func y(_ row: Int) -> Double { y0 + Double(row) * dy }
    /// The nearest column to table x, and row to table y (unclamped).
    public func column(atX x: Double) -> Int { Int(((x - x0) / dx).rounded()) }
    public func row(atY y: Double) -> Int { Int(((y - y0) / dy).rounded()) }
    public subscript(row: Int, column: Int) -> Float { bone[row * columns + column] }
    public var pixelAreaCm2: Double { dx * dy / 100 }
    /// Pixels in a length (at least one).
    public func columns(_ mm: Double) -> Int { max(1, Int((mm / dx).rounded())) }
    public func rows(_ mm: Double) -> Int { max(1, Int((mm / dy).rounded())) }

    /// The noise of one pixel's bone mineral where there is only soft tissue: the median
    /// absolute deviation of pixels the decomposer did not call bone, scaled to an SD
    /// (1.4826 × MAD, robust to the bone it missed).
    public static func softTissueNoise(_ scan: DecomposedScan) -> Double {
        var values: [Float] = []
        values.reserveCapacity(scan.bone.count / 2)
        for i in scan.bone.indices where !scan.marks[i].contains(.bone) && scan.bone[i].isFinite && scan.softTissue[i] > 1 {
            values.append(scan.bone[i])
        }
        guard values.count >= 50 else { return .nan }
        values.sort()
        let median = values[values.count / 2]
        var deviations = values.map { abs($0 - median) }
        deviations.sort()
        return 1.4826 * Double(deviations[deviations.count / 2])
    }
}

extension BoneMap {
    /// Which pixels are bone, by a half-maximum rule: the mean m of a pixel's 3 × 3
    /// neighbourhood must reach t = max(`minimumGCm2`, `sigmas` × σ / 3) (σ one pixel's noise;
    /// the mean of nine pixels has a third of it), and the pixel itself max(t, min(m / 2, 3σ)).
    /// A pixel just outside a body's edge has a neighbourhood mean of a third of the body's but
    /// a value near 0, so it stays out (3σ: one in 700); one just inside reaches more than
    /// half; a faint structure (a posterior element under thick tissue) is found from its
    /// neighbourhood where single pixels are noisy, and one touching a dense body (a facet at
    /// an endplate) is not cut by the body's mean, which the 3σ cap keeps out of its way.
    /// Returns the mask and t.
    /// Each pixel's 3 × 3 neighbourhood mean of the finite values, NaN where fewer than 5 are.
    func neighbourhoodMean() -> [Double] {
        var mean = [Double](repeating: .nan, count: bone.count)
        for r in 0..<rows {
            for c in 0..<columns {
                var s = 0.0, n = 0
                for rr in max(0, r - 1)...min(rows - 1, r + 1) {
                    for cc in max(0, c - 1)...min(columns - 1, c + 1) {
                        let v = bone[rr * columns + cc]
                        if v.isFinite { s += Double(v); n += 1 }
                    }
                }
                if n >= 5 { mean[r * columns + c] = s / Double(n) }
            }
        }
        return mean
    }

    func boneMask(noise: Double, minimumGCm2: Double, sigmas: Double) -> (Mask, Double) {
        let sigma = noise.isFinite ? noise : 0.02
        let t = max(minimumGCm2, sigmas * sigma / 3)
        let mean = neighbourhoodMean()
        let mask = Mask(columns: columns, rows: rows) { r, c in
            let i = r * columns + c
            let v = Double(bone[i]), m = mean[i]
            return v.isFinite && m.isFinite && m >= t && v >= max(t, min(m / 2, 3 * sigma))
        }
        return (mask, t)
    }
}

/// Grey-level morphology on an image of `columns` × `rows` values (NaN: no value, which
/// neither an erosion nor a dilation takes into account, and which stays NaN).
enum Morphology {
    /// The opening (erosion, then dilation) by a rectangle of (2·halfWidth + 1) × (2·halfHeight
    /// + 1) pixels: at each pixel the largest value under which the rectangle, placed anywhere
    /// over the pixel, fits. Structures smaller than the rectangle go; a plate larger than it
    /// stays. Both steps are separable for a rectangle (rows, then columns), each a sliding
    /// minimum or maximum with a monotonic queue: O(pixels) whatever the rectangle's size.
    static func opening(_ image: [Double], columns: Int, rows: Int, halfWidth: Int, halfHeight: Int) -> [Double] {
        guard columns > 0, rows > 0, image.count == columns * rows else { return image }
        var v = image
        slide(&v, columns: columns, rows: rows, halfWidth: halfWidth, halfHeight: halfHeight, minimum: true)
        slide(&v, columns: columns, rows: rows, halfWidth: halfWidth, halfHeight: halfHeight, minimum: false)
        for i in v.indices where image[i].isNaN { v[i] = .nan }
        return v
    }

    /// A sliding minimum (or maximum) over the rectangle, in place: along each row, then along
    /// each column of that. A window with no value gives NaN.
    private static func slide(_ v: inout [Double], columns: Int, rows: Int, halfWidth: Int, halfHeight: Int, minimum: Bool) {
        var line = [Double](repeating: .nan, count: max(columns, rows))
        var out = line
        var queue = [Int](repeating: 0, count: max(columns, rows))
        func run(count n: Int, half w: Int) {
            var head = 0, tail = 0, next = 0
            for c in 0..<n {
                while next < n && next <= c + w {
                    let x = line[next]
                    if !x.isNaN {
                        while tail > head && (minimum ? line[queue[tail - 1]] >= x : line[queue[tail - 1]] <= x) { tail -= 1 }
                        queue[tail] = next
                        tail += 1
                    }
                    next += 1
                }
                while tail > head && queue[head] < c - w { head += 1 }
                out[c] = tail > head ? line[queue[head]] : .nan
            }
        }
        for r in 0..<rows {
            for c in 0..<columns { line[c] = v[r * columns + c] }
            run(count: columns, half: max(0, halfWidth))
            for c in 0..<columns { v[r * columns + c] = out[c] }
        }
        for c in 0..<columns {
            for r in 0..<rows { line[r] = v[r * columns + c] }
            run(count: rows, half: max(0, halfHeight))
            for r in 0..<rows { v[r * columns + c] = out[r] }
        }
    }
}

/// A set of pixels (a mask) over a `BoneMap`, with the few morphological tools the analyses
/// need.
struct Mask: Sendable {
    let columns: Int
    let rows: Int
    var bits: [Bool]

    init(columns: Int, rows: Int, _ predicate: (Int, Int) -> Bool) {
        self.columns = columns
        self.rows = rows
        var b = [Bool](repeating: false, count: columns * rows)
        for r in 0..<rows { for c in 0..<columns where predicate(r, c) { b[r * columns + c] = true } }
        bits = b
    }

    subscript(row: Int, column: Int) -> Bool {
        row >= 0 && row < rows && column >= 0 && column < columns && bits[row * columns + column]
    }

    /// Connected components (8-neighbours) with at least `minimum` pixels, each as its pixels.
    func components(minimum: Int) -> [[(row: Int, column: Int)]] {
        var label = [Int32](repeating: -1, count: bits.count)
        var out: [[(row: Int, column: Int)]] = []
        var stack: [Int] = []
        for start in bits.indices where bits[start] && label[start] < 0 {
            var pixels: [(row: Int, column: Int)] = []
            label[start] = Int32(out.count)
            stack.append(start)
            while let i = stack.popLast() {
                let r = i / columns, c = i % columns
                pixels.append((r, c))
                for dr in -1...1 {
                    for dc in -1...1 where dr != 0 || dc != 0 {
                        let rr = r + dr, cc = c + dc
                        guard rr >= 0, rr < rows, cc >= 0, cc < columns else { continue }
                        let j = rr * columns + cc
                        if bits[j] && label[j] < 0 { label[j] = Int32(out.count); stack.append(j) }
                    }
                }
            }
            if pixels.count >= minimum { out.append(pixels) }
        }
        return out
    }
}

/// Small numerical helpers, each one named.
enum Profile {
    /// A running mean over ±`half` samples (shorter at the ends), ignoring NaN.
    static func smooth(_ p: [Double], half: Int) -> [Double] {
        p.indices.map { i in
            var s = 0.0, n = 0
            for j in max(0, i - half)...min(p.count - 1, i + half) where p[j].isFinite { s += p[j]; n += 1 }
            return n > 0 ? s / Double(n) : .nan
        }
    }

    /// A running median over ±`half` samples of the finite values, weighted by `weight`
    /// (samples of weight 0 are ignored).
    static func weightedMedian(_ p: [Double], weight: [Double], half: Int) -> [Double] {
        p.indices.map { i in
            var items: [(Double, Double)] = []
            for j in max(0, i - half)...min(p.count - 1, i + half) where p[j].isFinite && weight[j] > 0 { items.append((p[j], weight[j])) }
            guard !items.isEmpty else { return .nan }
            items.sort { $0.0 < $1.0 }
            let total = items.reduce(0) { $0 + $1.1 }
            var acc = 0.0
            for (v, w) in items {
                acc += w
                if acc >= total / 2 { return v }
            }
            return items[items.count - 1].0
        }
    }

    static func median(_ values: [Double]) -> Double {
        let s = values.filter(\.isFinite).sorted()
        guard !s.isEmpty else { return .nan }
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    /// Fills NaN samples from the nearest finite ones (linear between, constant at the ends).
    static func filled(_ p: [Double]) -> [Double] {
        let known = p.indices.filter { p[$0].isFinite }
        guard let first = known.first, let last = known.last else { return p }
        var out = p
        for i in 0..<first { out[i] = p[first] }
        for i in (last + 1)..<p.count { out[i] = p[last] }
        for (a, b) in zip(known, known.dropFirst()) where b > a + 1 {
            for i in (a + 1)..<b { out[i] = p[a] + (p[b] - p[a]) * Double(i - a) / Double(b - a) }
        }
        return out
    }
}

extension DecomposedScan {
    /// Why this scan's image cannot be measured (nil when it can): pixels outside
    /// `pixelMM`, fewer than `minimumChannels` channels or `minimumLines` lines, or arrays that
    /// do not match the geometry. One check for every analysis.
    func geometryProblem(pixelMM: ClosedRange<Double>, minimumChannels: Int = 8, minimumLines: Int = 1) -> String? {
        let g = geometry
        guard g.pitchMM.isFinite, abs(g.lineStepMM).isFinite, pixelMM.contains(g.pitchMM), pixelMM.contains(abs(g.lineStepMM)),
              g.channels >= minimumChannels, g.lines >= minimumLines, bone.count == g.channels * g.lines, marks.count == bone.count,
              rowPresent.count == g.lines, softTissue.count == bone.count else {
            return "pitch \(g.pitchMM) mm, line step \(g.lineStepMM) mm, \(g.channels) channels, \(g.lines) lines"
        }
        return nil
    }
}
