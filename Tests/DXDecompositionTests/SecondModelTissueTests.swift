@testable import DXDecomposition
import DXProtocol
import Foundation
import Testing
@testable import DXSimulator

/// Issue 10's tissue matrix under both physics models: the ESP's vertebrae under lean 10–30
/// g/cm² and fat 0–9, uniform and with fat across the field, each scanned in the exam's AP
/// spine lines and the exposure mode its scout chooses (`Scanner.measureInChosenMode`), and the
/// mean of ten scans held against nominal (each mean's standard error printed beside it); and
/// the precision of thirty scans. The second model is its detector (threshold trims, heel
/// effect, energy blur, K-escape, charge sharing; pile-up and scatter off, since the whole
/// model's calibration is still refused, docs/physics.md). Cases not yet within 1 % are known
/// issues, so that the suite shows them and says when they are met (figures in
/// docs/physics.md, "The matrix in the exam's own lines"). All cases share one noise stream:
/// a case added, removed or scanned more often changes every later case's noise.
@Suite("Both models' detectors over tissues")
struct SecondModelTissueTests {
    static func scanner(seed: UInt64) -> Scanner {
        Scanner.cdte(seed: seed) { $0.pileUp = false; $0.scatterPerGcm2 = 0 }
    }

    /// The first model's cases not yet within 1 % (lean, fat left, fat right): none since the
    /// matrix is scanned in the exam's own lines and judged on ten scans (2026-12-07: docs/physics.md,
    /// "The matrix in the exam's own lines").
    static let notYetMet: [(Double, Double, Double)] = []
    /// The second model's detector, in the exam's own lines, ten scans each: lean 10 (L1 −1.04 %),
    /// the fat gradients at lean 15 (L1 −1.19 and −1.29 %), lean 20 fat 6 (L1 −1.02 %) and lean
    /// 30 fat 6 (L1 −1.53 ± 0.41 % at 7.5 times, where 2.5 times read +0.02 ± 0.76 %: the noise's
    /// selection, positive, had hidden the model's bias there). Lean 10 (−1.04 ± 0.08) and lean
    /// 20 fat 6 (−1.02 ± 0.33) are within their standard errors of the limit. Since the bone
    /// noise is judged (2026-12-07) lean 30 is scanned at 5 times (2.5 for some scouts) and met
    /// (L1 −0.03 %, was +3.37 % in the standard mode), lean 25 fat 3 at 2.5 times (−0.97 ±
    /// 0.29 %: the model's bias, no longer offset by the noise's selection).
    static let notYetMetSecond: [(Double, Double, Double)] = [
        (10, 0, 0), (15, 6, 0), (15, 9, 3), (20, 6, 6), (30, 6, 6),
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
        // The calibration's bone noise per photon (κ = σ_bone·√photons at its bone cells): the
        // second model's detector separates bone from soft tissue less per photon (its low
        // window counts higher energies), so needs more photons for the same noise; on the
        // first model the photon rule (150) is the stricter at all but its densest cells.
        let noise = try #require(cal.boneNoise)
        let kappas = noise.cells.map(\.kappa)
        let (least, most) = (kappas.min() ?? .nan, kappas.max() ?? .nan)
        print(String(format: "%@ bone noise per photon κ over %d bone cells: %.2f … %.2f g/cm²·√photon", model, kappas.count, least, most))
        if model == "cdte" {
            #expect(least > 3.2 && most < 7.5 && most > 5.5, "\(kappas)")
        } else {
            #expect(least > 1.8 && most < 3.2, "\(kappas)")
        }
        // lean, fat left, fat right; each in the exposure mode the exam's scout chooses.
        let cases: [(Double, Double, Double)] = [
            (10, 0, 0), (10, 9, 9), (15, 0, 6), (15, 6, 0), (15, 9, 3),
            (20, 0, 0), (20, 6, 6), (25, 3, 3), (30, 0, 0), (30, 6, 6),
        ]
        // `DEXA_MATRIX_LINES=reduced`: the tests' reduced exposure (0.3 of the exam's photons a
        // pixel), printed, not held (docs/physics.md, "The matrix in the exam's own lines").
        let reduced = ProcessInfo.processInfo.environment["DEXA_MATRIX_LINES"] == "reduced"
        var worst = 0.0
        for (lean, left, right) in cases {
            var sums: [String: Double] = [:], squares: [String: Double] = [:]
            var mode = ""
            var modes = Set<String>()
            var predictions: [(photons: Double, sd: Double)] = []
            var factors: [Double] = []
            // `DEXA_MATRIX_SCANS`: how many scans each case's mean takes (10).
            let scans = Int(ProcessInfo.processInfo.environment["DEXA_MATRIX_SCANS"] ?? "") ?? 10
            for _ in 0..<scans {
                let (bmd, choice) = try s.measureInChosenMode(spinePhantom(lean: lean, fatLeft: left, fatRight: right), stage: stage, calibration: cal,
                                                          lines: reduced ? .reduced : .examAPSpine)
                mode = String(format: "%@ ×%.2f, densest %.0f (bone SD %.2f), brightest %.0f", choice.mode.rawValue, choice.currentFactor,
                              choice.predictedDensestCounts ?? .nan, choice.predictedDensestBoneSD ?? .nan, choice.predictedBrightestCounts ?? .nan)
                modes.insert(String(format: "%@ ×%.2f", choice.mode.rawValue, choice.currentFactor))
                predictions.append((choice.predictedDensestCounts ?? .nan, choice.predictedDensestBoneSD ?? .nan))
                factors.append(choice.currentFactor)
                for (k, v) in bmd { sums[k, default: 0] += v / Double(scans); squares[k, default: 0] += v * v / Double(scans) }
            }
            var line: [String] = []
            var errors: [Double] = []
            for (name, expected) in HonestResultTests.nominal.sorted(by: { $0.key < $1.key }) {
                let error = ((sums[name] ?? .nan) - expected) / expected
                worst = error.isFinite ? max(worst, abs(error)) : .infinity
                errors.append(error)
                // The mean's own standard error, from the scans' spread.
                let m = sums[name] ?? .nan, se = (max(0, (squares[name] ?? .nan) - m * m) * Double(scans) / Double(max(1, scans - 1)) / Double(scans)).squareRoot()
                line.append(String(format: "%@ %+.2f %% (±%.2f)", name, error * 100, se / expected * 100))
            }
            // Every case reads a number; those not yet within 1 % (docs/physics.md) are known
            // issues, the rest are held to it.
            #expect(errors.allSatisfy { $0.isFinite }, "lean \(lean) fat \(left)→\(right): \(line)")
            // One mode for every scan of a case, so that its mean is of one exposure; or, where
            // a case lies on the edge of a step, two neighbouring steps, each scan's by its own
            // scout (its few counts decide, as they would a patient's at each visit): the scouts
            // that took more current predicted more noise (or fewer photons) than every one that
            // took less.
            let steps = [1.0, 2.5, 5.0, 7.5]
            var straddled = false
            if modes.count == 2, factors.count == predictions.count {
                let used = Set(factors).sorted()
                if used.count == 2, let i = steps.firstIndex(of: used[0]), i + 1 < steps.count, steps[i + 1] == used[1] {
                    let lower = zip(factors, predictions).filter { $0.0 == used[0] }.map(\.1), upper = zip(factors, predictions).filter { $0.0 == used[1] }.map(\.1)
                    let byNoise = (lower.map(\.sd).max() ?? .nan) <= (upper.map(\.sd).min() ?? .nan)
                    let byPhotons = (lower.map(\.photons).min() ?? .nan) >= (upper.map(\.photons).max() ?? .nan)
                    straddled = byNoise || byPhotons
                }
            }
            #expect(modes.count == 1 || straddled, "lean \(lean) fat \(left)→\(right): \(modes), predictions \(predictions)")
            if modes.count > 1 { print("lean \(lean) fat \(left)→\(right): scanned in \(modes.sorted()): the scouts' predictions straddle a limit (\(predictions.map { String(format: "%.0f / %.3f", $0.photons, $0.sd) }))") }
            let open = (model == "cdte" ? Self.notYetMetSecond : Self.notYetMet).contains { $0 == (lean, left, right) }
            if reduced {
                // Printed only.
            } else if open {
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

    /// The two windows' noise together. The second model's low window holds a share of the high
    /// window's photons; the stage takes that share off (`LowWindowMixing`), and with it the
    /// high window's noise, so the two logs move against each other. Measured on uniform lean
    /// tissue (64 channels × 200 lines, each channel against its own mean): the stage's
    /// covariance within 15 % of the measured one, and the spread of a pixel's bone signal
    /// (L_low − R·L_high, the classification's) within 5 % of what the stage's variances and
    /// covariance predict. Before the covariance was carried (2026-12-07) the prediction was 6–8 %
    /// low on this detector (1.00 on the first model), and the classification's 3σ stood at
    /// 2.8σ (docs/physics.md, "The two windows' noise together").
    @Test(arguments: [(20.0, 1.0), (30.0, 2.5), (30.0, 7.5)])
    func theTwoWindowsNoiseTogether(lean: Double, exposureFactor: Double) throws {
        var s = Self.scanner(seed: 66)
        let (stage, cal) = try s.calibrate()
        let slab = Phantom(name: "slab", cells: [Phantom.Cell(xUm: [100_000, 300_000], yUm: [500_000, 700_000], hydroxyapatite: 0, lean: lean, fat: 0)], rois: nil)
        let current = UInt32(400 * exposureFactor)
        let prepared = stage.prepared(periodUs: 300_000, currentUA: current, calibration: cal)
        let lines = try s.scan(PhantomScene(slab), y0: 505_000, y1: 605_000, stepUm: 500, periodUs: 300_000, currentUA: current).map { try prepared.process($0) }
        let channels = 40..<104
        var measured = 0.0, predicted = 0.0, signal = 0.0, predictedSignal = 0.0, count = 0.0
        var ratios: [Double] = []
        for c in channels { for a in lines { ratios.append(a.low[c] / a.high[c]) } }
        let r = ratios.reduce(0, +) / Double(ratios.count)
        for c in channels {
            let ml = lines.map { $0.low[c] }.reduce(0, +) / Double(lines.count), mh = lines.map { $0.high[c] }.reduce(0, +) / Double(lines.count)
            for a in lines {
                let dl = a.low[c] - ml, dh = a.high[c] - mh
                measured += dl * dh
                predicted += a.covariance(at: c)
                signal += (dl - r * dh) * (dl - r * dh)
                predictedSignal += a.varianceLow[c] + r * r * a.varianceHigh[c] - 2 * r * a.covariance(at: c)
                count += 1
            }
        }
        measured /= count; predicted /= count
        let spread = (signal / predictedSignal).squareRoot()
        print(String(format: "cdte lean %.0f ×%.1f: covariance measured %.3g, carried %.3g; bone signal's spread over the predicted %.3f", lean, exposureFactor, measured, predicted, spread))
        #expect(measured < 0 && abs(predicted / measured - 1) < 0.15)
        #expect(abs(spread - 1) < 0.05)
    }

    /// The decomposer uses the covariance where it reckons a pixel's noise: under lean 30 g/cm²
    /// of the second model's detector (no bone), the same lines decomposed with their covariance
    /// and with it taken away. With it the classification's σ is the true one, larger here (the
    /// windows move against each other), so fewer tissue pixels are called bone; a covariance
    /// taken with the wrong sign would call more.
    @Test func theDecomposerReckonsWithTheCovariance() throws {
        var s = Self.scanner(seed: 66)
        let (stage, cal) = try s.calibrate()
        let slab = Phantom(name: "slab", cells: [Phantom.Cell(xUm: [100_000, 300_000], yUm: [500_000, 700_000], hydroxyapatite: 0, lean: 30, fat: 0)], rois: nil)
        let prepared = stage.prepared(periodUs: 300_000, currentUA: 1000, calibration: cal)
        let lines = try s.scan(PhantomScene(slab), y0: 505_000, y1: 605_000, stepUm: 500, periodUs: 300_000, currentUA: 1000).map { try prepared.process($0) }
        let d = Decomposer(calibration: cal)
        func calledBone(_ change: (inout AttenuationLine) -> Void) -> Double {
            var memory: TissueMemory? = TissueMemory(channels: 144)
            var bone = 0, pixels = 0
            for var a in lines {
                change(&a)
                let line = d.decompose(a, memory: &memory)
                for c in 40..<104 { pixels += 1; if line.isBone[c] { bone += 1 } }
            }
            return Double(bone) / Double(pixels)
        }
        let carried = calledBone { _ in }, none = calledBone { $0.covariance = [] }
        let flipped = calledBone { $0.covariance = $0.covariance.map { -$0 } }
        print(String(format: "cdte lean 30, tissue called bone: with the covariance %.2f %%, without %.2f %%, with its sign flipped %.2f %%", carried * 100, none * 100, flipped * 100))
        #expect(lines.allSatisfy { a in (40..<104).allSatisfy { a.covariance(at: $0) < 0 } })
        #expect(carried < none && none < flipped)
    }

    /// Precision as a physicist measures it on a clinical unit: scans of the ESP in the exam's
    /// own AP spine protocol and the mode its scout chooses (thin here), each with its own noise,
    /// the CV per vertebra at most 0.5 %. Judged over thirty scans (a CV to about 13 %; the
    /// issue's ten know it to about a quarter), the first ten's printed beside it, and the tests'
    /// fixed exposure (40 ms at 3 mA per 0.5 mm line: 1.2 times the photons per mm² of the
    /// exam's thin mode here) over ten. L2 and L3 are held; L1 is a known issue.
    @Test func precisionOfTenScans() throws {
        var s = Self.scanner(seed: 66)
        let (stage, cal) = try s.calibrate()
        var values: [String: [Double]] = [:], fixed: [String: [Double]] = [:]
        var modes = Set<String>()
        // Thirty scans: the issue's ten (the first), and thirty for a CV known to about 13 %
        // rather than 24 % (ten scans' CV of a true 0.43 % exceeds 0.5 % one time in five).
        for k in 0..<30 {
            let (bmd, choice) = try s.measureInChosenMode(StandardPhantoms.esp, stage: stage, calibration: cal)
            modes.insert(String(format: "%@ ×%.2f", choice.mode.rawValue, choice.currentFactor))
            for (name, v) in bmd { values[name, default: []].append(v) }
            guard k < 10 else { continue }
            for (name, v) in try s.measure(StandardPhantoms.esp, stage: stage, calibration: cal) { fixed[name, default: []].append(v) }
        }
        func cv(_ v: [Double]) -> (mean: Double, cv: Double) {
            let mean = v.reduce(0, +) / Double(v.count)
            return (mean, (v.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(v.count - 1)).squareRoot() / mean)
        }
        // The same mode every time (thin: the ESP's brightest tenth would count 78,000), and
        // every vertebra read in every scan.
        #expect(modes.count == 1, "\(modes)")
        #expect(values.count == 3 && values.values.allSatisfy { $0.count == 30 && $0.allSatisfy(\.isFinite) }, "\(values.mapValues(\.count))")
        for (name, v) in values.sorted(by: { $0.key < $1.key }) {
            let (mean, c) = cv(Array(v.prefix(10))), (_, c30) = cv(v), (_, f) = cv(fixed[name] ?? [])
            print(String(format: "cdte detector precision %@ (exam's protocol, %@): mean %.4f, CV %.3f %% (30 scans: %.3f %%); the tests' fixed exposure CV %.3f %%",
                         name, modes.sorted().joined(separator: ", "), mean, c * 100, c30 * 100, f * 100))
            if name == "L1" {
                // 0.65 % over thirty scans in the exam's lines: in the thin mode the ESP's tissue
                // takes (its brightest tenth would count 78,000 in the standard mode), half the
                // exam's photons.
                withKnownIssue("the second model's L1 precision over thirty scans 0.65 % (issue 10)") {
                    #expect(c30 <= 0.005, "\(name): CV over thirty scans \(c30 * 100) %")
                }
            } else {
                #expect(c30 <= 0.005, "\(name): CV over thirty scans \(c30 * 100) %")
            }
        }
    }
}
