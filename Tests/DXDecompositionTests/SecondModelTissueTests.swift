@testable import DXDecomposition
import DXProtocol
import Foundation
import Testing
@testable import DXSimulator

/// Issue 10's tissue matrix under both physics models: the ESP's vertebrae under lean 10–30
/// g/cm² and fat 0–9, uniform and with fat across the field, each scanned in the exposure mode
/// the exam's scout chooses (`Scanner.measureInChosenMode`) and the mean of three scans held
/// against nominal; and the precision of ten scans. The second model is its detector
/// (threshold trims, heel effect, energy blur, K-escape, charge sharing; pile-up and scatter
/// off, since the whole model's calibration is still refused, docs/physics.md). Cases not yet
/// within 1 % are known issues, so that the suite shows them and says when they are met
/// (figures in docs/physics.md, "The tissue matrix in the exam's modes").
@Suite("Both models' detectors over tissues")
struct SecondModelTissueTests {
    static func scanner(seed: UInt64) -> Scanner {
        Scanner.cdte(seed: seed) { $0.pileUp = false; $0.scatterPerGcm2 = 0 }
    }

    /// The first model's cases not yet within 1 % (lean, fat left, fat right): the thickest
    /// tissue (36 g/cm², beyond the calibration phantom's 31: docs/physics.md), and the fattest
    /// gradient's L1 (fat 9, beyond the phantom's 6).
    static let notYetMet: [(Double, Double, Double)] = [(30, 6, 6)]
    /// The second model's detector: all but lean 10, lean 20 (fat 0 and 6) and lean 30 fat 6
    /// (docs/physics.md).
    static let notYetMetSecond: [(Double, Double, Double)] = [
        (10, 9, 9), (15, 6, 0), (25, 3, 3), (30, 0, 0),
    ]

    @Test(arguments: ["kramers", "cdte"])
    func theTissueMatrix(model: String) throws {
        var s = model == "cdte" ? Self.scanner(seed: 66) : Scanner(seed: 4)
        let (stage, cal) = try s.calibrate()
        #expect(cal.verdict.accepted, "\(cal.verdict)")
        // The second model's windows mix: the calibration says how, and the scout counts the
        // unmixed low window's photons with it (the air's low counts over its high counts, near
        // 1 on both models' spectra).
        if model == "cdte" {
            let u = try #require(cal.unmixing, "no unmixing: \(String(describing: cal.lowWindowMixing)), \(String(describing: cal.lowWindowAirRatio))")
            print(String(format: "cdte unmixing: fraction %.4f, air low/high %.4f", u.fraction, u.airLowOverHigh))
            #expect(u.fraction > 0.05 && u.fraction <= LowWindowMixing.largest && u.airLowOverHigh > 0.3 && u.airLowOverHigh < 3, "\(u)")
            // Kept with the calibration (and an old calibration without it reads as one without).
            let stored = try JSONDecoder().decode(Calibration.self, from: JSONEncoder().encode(cal))
            #expect(stored.unmixing == u)
            var old = cal
            old.lowWindowAirRatio = nil
            #expect(try JSONDecoder().decode(Calibration.self, from: JSONEncoder().encode(old)).unmixing == nil)
            // The scout's photons are the attenuation stage's: a pixel of 300 low and 1,000 high
            // counts above dark (each channel's own) has the variance of its unmixed low
            // attenuation near 1/photons in the central half (the stage's own g per channel, its
            // cross term and the +1 of each count make the difference).
            let prepared = stage.prepared(periodUs: 300_000, currentUA: 400, calibration: cal)
            let n = stage.dark.means.channels
            let samples = (0..<n).flatMap { c in [UInt16((stage.dark.means.low[c] + 300).rounded()), UInt16((stage.dark.means.high[c] + 1000).rounded())] }
            let a = try prepared.process(ScanLine(index: 0, yUm: 0, xUm: 200_000, tUs: 0, flags: [.xrayOn], samples: samples))
            let photons = u.photons(low: 300, high: 1000)
            let ratios = ((n / 4)..<(n - n / 4)).map { 1 / a.varianceLow[$0] / photons }.sorted()
            print(String(format: "cdte: the stage's 1/var(L_low) over the scout's photons (%.1f), central half: %.3f … %.3f", photons, ratios.first ?? .nan, ratios.last ?? .nan))
            #expect(ratios.allSatisfy { abs($0 - 1) < 0.15 }, "\(ratios)")
            var broken = cal
            broken.lowWindowAirRatio = -1
            #expect(!broken.isWellFormed && broken.unmixing == nil)
        } else {
            #expect(cal.unmixing == nil)
        }
        // lean, fat left, fat right; each in the exposure mode the exam's scout chooses.
        let cases: [(Double, Double, Double)] = [
            (10, 0, 0), (10, 9, 9), (15, 0, 6), (15, 6, 0), (15, 9, 3),
            (20, 0, 0), (20, 6, 6), (25, 3, 3), (30, 0, 0), (30, 6, 6),
        ]
        var worst = 0.0
        for (lean, left, right) in cases {
            var sums: [String: Double] = [:]
            var mode = ""
            for _ in 0..<3 {
                let (bmd, choice) = try s.measureInChosenMode(spinePhantom(lean: lean, fatLeft: left, fatRight: right), stage: stage, calibration: cal)
                mode = String(format: "%@ ×%.2f, densest %.0f, brightest %.0f", choice.mode.rawValue, choice.currentFactor,
                              choice.predictedDensestCounts ?? .nan, choice.predictedBrightestCounts ?? .nan)
                for (k, v) in bmd { sums[k, default: 0] += v / 3 }
            }
            var line: [String] = []
            var errors: [Double] = []
            for (name, expected) in HonestResultTests.nominal.sorted(by: { $0.key < $1.key }) {
                let error = ((sums[name] ?? .nan) - expected) / expected
                worst = error.isFinite ? max(worst, abs(error)) : .infinity
                errors.append(error)
                line.append(String(format: "%@ %+.2f %%", name, error * 100))
            }
            // Every case reads a number; those not yet within 1 % (docs/physics.md) are known
            // issues, the rest are held to it.
            #expect(errors.allSatisfy { $0.isFinite }, "lean \(lean) fat \(left)→\(right): \(line)")
            let open = (model == "cdte" ? Self.notYetMetSecond : Self.notYetMet).contains { $0 == (lean, left, right) }
            if open {
                // Deterministic (fixed seeds): a case that is met fails here, to be moved out.
                withKnownIssue("\(model) over tissues beyond the ESP's (issue 10)") {
                    #expect(errors.allSatisfy { abs($0) <= 0.01 }, "lean \(lean) fat \(left)→\(right): \(line)")
                }
            } else {
                #expect(errors.allSatisfy { abs($0) <= 0.01 }, "lean \(lean) fat \(left)→\(right): \(line)")
            }
            print(String(format: "%@ tissue matrix lean %.0f fat %.0f→%.0f (%@): ", model, lean, left, right, mode) + line.joined(separator: ", "))
        }
        print(String(format: "%@ tissue matrix: worst %.2f %%", model, worst * 100))
    }

    @Test func precisionOfTenScans() throws {
        var s = Self.scanner(seed: 66)
        let (stage, cal) = try s.calibrate()
        var values: [String: [Double]] = [:]
        for _ in 0..<10 {
            for (name, v) in try s.measure(StandardPhantoms.esp, stage: stage, calibration: cal) { values[name, default: []].append(v) }
        }
        for (name, v) in values.sorted(by: { $0.key < $1.key }) {
            let mean = v.reduce(0, +) / Double(v.count)
            let sd = (v.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(v.count - 1)).squareRoot()
            print(String(format: "cdte detector precision %@: mean %.4f, CV %.3f %%", name, mean, sd / mean * 100))
            withKnownIssue("the second model's L1 precision 0.56 % (issue 10)", isIntermittent: true) {
                #expect(sd / mean <= 0.005)
            }
        }
    }
}
