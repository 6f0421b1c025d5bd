@testable import DXDecomposition
import DXProtocol
import Foundation
import Testing
@testable import DXSimulator

/// Issue 10's tissue matrix under the second physics model's detector (threshold trims, heel
/// effect, energy blur, K-escape, charge sharing; pile-up and scatter off, since the whole model's
/// calibration is still refused, docs/physics.md): the ESP's vertebrae under lean 10–30 g/cm²
/// and fat 0–9, uniform and with fat across the field, each the mean of three scans against
/// nominal; and the precision of ten scans. The same matrix as the first model's
/// (`softTissueCompositionAndThicknessBarelyMatter`, `precisionOfTenRepeatedScans`).
/// Not yet met (2026-12-06, seed 66, docs/physics.md): the thinnest tissue saturates at the
/// standard exposure (lean 10, no fat: L1 −100 %, L2 and L3 no number), the thickest reads
/// high (lean 30, no fat, thick mode: +5.5 / +3.8 / +4.2 %), fat across the field −2.0 % at
/// L1, lean 20 under fat 6 +3.2 % at L1; L1's precision 0.56 %. Known issues here, so that
/// the suite shows them and says when they are met.
@Suite("The second model's detector over tissues")
struct SecondModelTissueTests {
    static func scanner(seed: UInt64) -> Scanner {
        Scanner.cdte(seed: seed) { $0.pileUp = false; $0.scatterPerGcm2 = 0 }
    }

    @Test(arguments: [66] as [UInt64])
    func theTissueMatrix(seed: UInt64) throws {
        var s = Self.scanner(seed: seed)
        let (stage, cal) = try s.calibrate()
        #expect(cal.verdict.accepted, "\(cal.verdict)")
        // lean, fat left, fat right, the thick mode.
        let cases: [(Double, Double, Double, Bool)] = [
            (10, 0, 0, false), (10, 9, 9, false), (15, 0, 6, false), (15, 6, 0, false), (15, 9, 3, false),
            (20, 0, 0, false), (20, 6, 6, false), (25, 3, 3, true), (30, 0, 0, true), (30, 6, 6, true),
        ]
        var worst = 0.0
        for (lean, left, right, thick) in cases {
            var sums: [String: Double] = [:]
            for _ in 0..<3 {
                for (k, v) in try s.measure(spinePhantom(lean: lean, fatLeft: left, fatRight: right), stage: stage, calibration: cal, thick: thick) {
                    sums[k, default: 0] += v / 3
                }
            }
            var line: [String] = []
            var errors: [Double] = []
            for (name, expected) in HonestResultTests.nominal.sorted(by: { $0.key < $1.key }) {
                let error = ((sums[name] ?? .nan) - expected) / expected
                worst = error.isFinite ? max(worst, abs(error)) : .infinity
                errors.append(error)
                line.append(String(format: "%@ %+.2f %%", name, error * 100))
            }
            withKnownIssue("the second model's detector over tissues beyond the ESP's (issue 10)", isIntermittent: true) {
                #expect(errors.allSatisfy { $0.isFinite && abs($0) <= 0.01 }, "lean \(lean) fat \(left)→\(right): \(line)")
            }
            print(String(format: "cdte detector (seed %d) lean %.0f fat %.0f→%.0f%@: ", seed, lean, left, right, thick ? " (thick)" : "") + line.joined(separator: ", "))
        }
        print(String(format: "cdte detector (seed %d) tissue matrix: worst %.2f %%", seed, worst * 100))
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
