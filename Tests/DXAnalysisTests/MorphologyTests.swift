@testable import DXAnalysis
import DXSimulator
import Testing

@Suite("Grey-level morphology")
struct MorphologyTests {
    /// The opening by the definition: at each pixel the largest, over the rectangles placed over
    /// it, of the smallest value under the rectangle (values only; NaN neither counts nor is
    /// given a value).
    static func bruteOpening(_ v: [Double], columns: Int, rows: Int, halfWidth w: Int, halfHeight h: Int) -> [Double] {
        func extreme(_ img: [Double], minimum: Bool) -> [Double] {
            var out = [Double](repeating: .nan, count: img.count)
            for r in 0..<rows {
                for c in 0..<columns {
                    var best = Double.nan
                    for rr in max(0, r - h)...min(rows - 1, r + h) {
                        for cc in max(0, c - w)...min(columns - 1, c + w) {
                            let x = img[rr * columns + cc]
                            guard !x.isNaN else { continue }
                            if best.isNaN || (minimum ? x < best : x > best) { best = x }
                        }
                    }
                    out[r * columns + c] = best
                }
            }
            return out
        }
        var o = extreme(extreme(v, minimum: true), minimum: false)
        for i in o.indices where v[i].isNaN { o[i] = .nan }
        return o
    }

    @Test func theSeparableOpeningIsTheOpening() {
        var rng = SplitMix64(seed: 7)
        for trial in 0..<40 {
            let columns = 1 + Int(rng.next() % 23), rows = 1 + Int(rng.next() % 19)
            let w = Int(rng.next() % 6), h = Int(rng.next() % 6)
            let image = (0..<(columns * rows)).map { _ in rng.next() % 9 == 0 ? Double.nan : Double(rng.next() % 1000) / 100 }
            let fast = Morphology.opening(image, columns: columns, rows: rows, halfWidth: w, halfHeight: h)
            let slow = Self.bruteOpening(image, columns: columns, rows: rows, halfWidth: w, halfHeight: h)
            for i in image.indices {
                #expect(fast[i] == slow[i] || (fast[i].isNaN && slow[i].isNaN), "trial \(trial) pixel \(i): \(fast[i]) against \(slow[i])")
            }
        }
    }

    /// A plate of 0.2 with a body of 1.0 on it (smaller than the rectangle) and a rib of 0.5
    /// across it (narrower): the opening is the plate; what stands above it is the body and
    /// the rib, each at its own height above the plate.
    @Test func aPlateStaysABodyOnItGoes() {
        let columns = 60, rows = 60
        var image = [Double](repeating: 0, count: columns * rows)
        for r in 5..<55 { for c in 5..<55 { image[r * columns + c] = 0.2 } }
        for r in 20..<32 { for c in 22..<40 { image[r * columns + c] += 1.0 } }
        for c in 5..<55 { image[45 * columns + c] += 0.5 }
        let opened = Morphology.opening(image, columns: columns, rows: rows, halfWidth: 10, halfHeight: 10)
        #expect(abs(opened[25 * columns + 30] - 0.2) < 1e-12)
        #expect(abs(opened[45 * columns + 30] - 0.2) < 1e-12)
        #expect(abs(opened[2 * columns + 2]) < 1e-12)
        // Garbage shapes give an image of the same size, never a trap.
        #expect(Morphology.opening(image, columns: 7, rows: 3, halfWidth: 2, halfHeight: 2) == image)
        #expect(Morphology.opening([], columns: 0, rows: 0, halfWidth: 1, halfHeight: 1).isEmpty)
        #expect(Morphology.opening([1, 2, 3], columns: 3, rows: 1, halfWidth: 1_000_000, halfHeight: 1_000_000) == [1, 1, 1])
    }
}
