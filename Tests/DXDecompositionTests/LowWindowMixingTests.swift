@testable import DXDecomposition
import DXProtocol
import Foundation
import Testing
@testable import DXSimulator

/// The low window's share of high-energy photons (`LowWindowMixing`): found on cells whose
/// mixture is known, left at 0 where there is none, and taken out of every pixel the same way
/// as out of the calibration's cells.
@Suite("The low window's high-energy photons")
struct LowWindowMixingTests {
    /// Mass attenuation (cm²/g) of each material in each window of a two-energy beam (of the
    /// order of 40 and 70 keV; the exact values do not matter, only that bone and the two soft
    /// tissues differ between the windows).
    static let mu = (lean: (low: 0.27, high: 0.20), fat: (low: 0.22, high: 0.18), bone: (low: 1.05, high: 0.45))

    /// A calibration phantom's 75 cells (hydroxyapatite 0–2, lean 5–25, fat 0–6 g/cm²), one
    /// 4 mm cell per four channels, each read by six lines without noise, the low window a
    /// mixture with share `f` of photons attenuated as the high window's.
    static func cells(mixing f: Double) -> (phantom: Phantom, geometry: ScanGeometry, lines: [AttenuationLine]) {
        var cells: [Phantom.Cell] = []
        for ha in [0, 0.5, 1, 1.5, 2] { for lean in [5.0, 10, 15, 20, 25] { for fat in [0.0, 3, 6] {
            let k = cells.count
            cells.append(Phantom.Cell(xUm: [Int32(k * 4_000), Int32(k * 4_000 + 4_000)], yUm: [0, 10_000], hydroxyapatite: ha, lean: lean, fat: fat))
        } } }
        let channels = 4 * cells.count
        let geometry = ScanGeometry(channels: channels, pitchUm: 1000)
        let carriage = Int32((channels - 1) * 1000 / 2)
        var lines: [AttenuationLine] = []
        for (i, y) in stride(from: Int32(2_000), to: 8_000, by: 1000).enumerated() {
            var tl = [Double](repeating: .nan, count: channels), th = tl
            for c in 0..<channels {
                let x = geometry.x(ofChannel: c, carriageX: carriage)
                guard let cell = cells.first(where: { x >= Double($0.xUm[0]) && x < Double($0.xUm[1]) }) else { continue }
                let low = mu.lean.low * cell.lean + mu.fat.low * cell.fat + mu.bone.low * cell.hydroxyapatite
                let high = mu.lean.high * cell.lean + mu.fat.high * cell.fat + mu.bone.high * cell.hydroxyapatite
                th[c] = exp(-high)
                tl[c] = (1 - f) * exp(-low) + f * th[c]
            }
            let tiny = [Double](repeating: 1e-12, count: channels)
            lines.append(AttenuationLine(index: UInt32(i), yUm: y, xUm: carriage, low: tl.map { -log($0) }, high: th.map { -log($0) },
                                         transmissionLow: tl, transmissionHigh: th, transmissionVarianceLow: tiny, transmissionVarianceHigh: tiny,
                                         varianceLow: tiny, varianceHigh: tiny, flags: [PixelFlags](repeating: [], count: channels), exposure: 1))
        }
        return (Phantom(name: "mixed cells", cells: cells), geometry, lines)
    }

    static func measured(mixing f: Double) throws -> CalibrationMeasurement.Result {
        let s = cells(mixing: f)
        let gathered = try CalibrationMeasurement.gather(each: { body in for l in s.lines { body(l) } }, geometry: s.geometry,
                                                         phantom: s.phantom, marginUm: 500)
        return try LowWindowMixing.measure(gathered, coverage: .inferGaps)
    }

    /// Known shares are found, to a few thousandths (the bone model is a polynomial, so even
    /// unmixed cells leave it a small residual), and the cells then fit the bone model far
    /// better than mixed.
    @Test(arguments: [0.04, 0.09, 0.15])
    func knownSharesAreFound(f: Double) throws {
        let m = try Self.measured(mixing: f)
        print(String(format: "mixing %.3f: found %.4f", f, m.lowWindowMixing))
        #expect(abs(m.lowWindowMixing - f) < 0.005, "found \(m.lowWindowMixing) for \(f)")
        let unmixed = try #require(Calibration.boneMisfit(points: m.points))
        let s = Self.cells(mixing: f)
        let raw = try CalibrationMeasurement.measure(lines: s.lines, geometry: s.geometry, phantom: s.phantom, marginUm: 500, coverage: .inferGaps)
        let mixed = try #require(Calibration.boneMisfit(points: raw.points))
        #expect(unmixed.rss < mixed.rss / 10)
        // What the calibration keeps, and the stage applies.
        let calibration = try Calibration.fit(m, source: "mixed cells")
        #expect(calibration.lowWindowMixing == m.lowWindowMixing)
    }

    /// Windows that do not mix keep f = 0: nothing stored, and the stage's fast path.
    @Test func noMixtureNoUnmixing() throws {
        let m = try Self.measured(mixing: 0)
        #expect(m.lowWindowMixing == 0)
        #expect(try Calibration.fit(m, source: "clean cells").lowWindowMixing == nil)
    }

    /// Poisson counts in both windows, a tenth of the high window's transmission and the low
    /// window's own photons from plenty down to 20 under 180 mixed in: where the unmixed count
    /// holds photons enough its log is unbiased; where it does not, the pixel is flagged (below
    /// dark where what is left is within the subtraction's own noise, photon-starved where it
    /// holds fewer than 25 photons' worth), and no pixel's value runs away (an outside review
    /// found −18.6 on average at 20 photons before the unmixed count was judged by its noise).
    @Test(arguments: [400.0, 100, 20])
    func fewPhotonsOfItsOwnAreFlaggedNotWild(own: Double) throws {
        let channels = 1000, f = 0.09
        let darkLine = ScanLine(index: 0, yUm: 0, xUm: 0, tUs: 0, flags: [], samples: [UInt16](repeating: 100, count: 2 * channels))
        let airLine = ScanLine(index: 0, yUm: 0, xUm: 0, tUs: 0, flags: .xrayOn,
                               samples: (0..<2 * channels).map { $0 % 2 == 0 ? 20_100 : 10_100 })
        let stage = try AttenuationStage(darkLines: [darkLine], airLines: [airLine], airPeriodUs: 1000, airCurrentUA: 1000)
        let prepared = stage.prepared(periodUs: 1000, currentUA: 1000, transmissions: false, lowWindowMixing: f)
        var rng = SplitMix64(seed: UInt64(own))
        // Exact (Knuth) below 30, the normal approximation above (e^−mean underflows past 700),
        // as the simulator's detector draws them.
        func poisson(_ mean: Double) -> Double {
            if mean >= 30 { return max(0, (mean + mean.squareRoot() * rng.gaussian()).rounded()) }
            let limit = exp(-mean)
            var k = 0.0, p = 1.0
            repeat { k += 1; p *= Double(rng.next() >> 11) * 0x1p-53 } while p > limit
            return k - 1
        }
        let high = 1_000.0, mixed = f * 20_000 / 10_000 * high
        let truth = -log(own / (20_000 * (1 - f)))
        var sum = 0.0, kept = 0, flagged = 0, worst = 0.0
        for i in 0..<20 {
            var samples = [UInt16](repeating: 0, count: 2 * channels)
            for c in 0..<channels {
                samples[2 * c] = UInt16(100 + poisson(own + mixed))
                samples[2 * c + 1] = UInt16(100 + poisson(high))
            }
            let line = try prepared.process(ScanLine(index: UInt32(i), yUm: 0, xUm: 0, tUs: 0, flags: .xrayOn, samples: samples))
            for c in 0..<channels {
                if !line.flags[c].isDisjoint(with: [.belowDark, .photonStarved]) { flagged += 1 }
                guard line.flags[c].isMeasured else { continue }
                kept += 1
                sum += line.low[c]
                worst = max(worst, abs(line.low[c] - truth))
            }
        }
        let mean = sum / Double(max(kept, 1))
        print(String(format: "%.0f own photons under %.0f mixed: %d of 20000 kept, %d flagged, mean log %+.4f from the truth, worst pixel %.2f",
                     own, mixed, kept, flagged, mean - truth, worst))
        #expect(worst < 2, "a pixel's log ran away")
        if own >= 100 {
            #expect(abs(mean - truth) < 0.005)
        } else {
            #expect(flagged > 10_000, "most pixels hold too few photons of their own and should say so")
        }
    }

    /// A pixel is unmixed as the cells were: its low window's count less f of its high window's
    /// (scaled by the two windows' air counts), over 1 − f; its variance carries both windows'
    /// noise; and one with nothing left of its own is below dark and carries no number.
    @Test func aPixelIsUnmixedAsTheCellsWere() throws {
        let channels = 4
        let darkLine = ScanLine(index: 0, yUm: 0, xUm: 0, tUs: 0, flags: [], samples: [UInt16](repeating: 100, count: 2 * channels))
        let airLine = ScanLine(index: 0, yUm: 0, xUm: 0, tUs: 0, flags: .xrayOn, samples: [UInt16](repeating: 0, count: 2 * channels).enumerated().map { $0.offset % 2 == 0 ? 20_100 : 10_100 })
        let stage = try AttenuationStage(darkLines: [darkLine], airLines: [airLine], airPeriodUs: 1000, airCurrentUA: 1000)
        let f = 0.1
        let plain = stage.prepared(periodUs: 1000, currentUA: 1000, transmissions: true)
        let unmixing = stage.prepared(periodUs: 1000, currentUA: 1000, transmissions: true, lowWindowMixing: f)
        // Low 2000 (T 0.1), high 3000 (T 0.3); the last channel's low window holds less than
        // f of the high's share.
        let samples: [UInt16] = [2_100, 3_100, 2_100, 3_100, 5_100, 9_100, 300, 9_100]
        let line = ScanLine(index: 1, yUm: 0, xUm: 0, tUs: 0, flags: .xrayOn, samples: samples)
        let a = try plain.process(line), b = try unmixing.process(line)
        #expect(abs(b.transmissionLow[0] - (0.1 - f * 0.3) / (1 - f)) < 1e-12)
        #expect(b.transmissionHigh[0] == a.transmissionHigh[0])
        #expect(b.high[0] == a.high[0] && b.varianceHigh[0] == a.varianceHigh[0])
        // ln of the unmixed count, less half its relative variance: (2000 − 0.1·2·3000)/0.9.
        let count = (2_000 - f * 2 * 3_000) / (1 - f)
        let variance = (2_001 + f * f * 4 * 3_001) / ((1 - f) * (1 - f)) / (count * count)
        #expect(abs(b.varianceLow[0] - variance) < 1e-12)
        #expect(abs(b.low[0] - (log(20_000) - log(count) - variance / 2)) < 1e-9)
        #expect(b.flags[3].contains(.belowDark) && b.low[3].isNaN)
        #expect(a.flags[3].isMeasured)
        // The same without the transmissions kept (the stage's fast path must not be taken).
        let lean = try stage.prepared(periodUs: 1000, currentUA: 1000, transmissions: false, lowWindowMixing: f).process(line)
        #expect(lean.low[0] == b.low[0] && lean.varianceLow[0] == b.varianceLow[0])
        #expect(try plain.process(line).low[0] != lean.low[0])
    }
}
