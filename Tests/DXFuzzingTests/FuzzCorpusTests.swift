import DXControl
import DXDecomposition
@testable import DXFuzzing
import DXProtocol
import DXSimulator
import DXTestSupport
import Foundation
import Testing

/// The fuzzing's committed inputs, replayed by the regular suite: every seed still reaches
/// past its parser (a seed the parser refuses explores nothing), and every crash the fuzzer
/// found runs to its end (docs/RELIABILITY.md, "Fuzzing").
@Suite("Fuzz corpus", .serialized)
struct FuzzCorpusTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fuzz").path

    static func inputs(_ kind: String, _ target: FuzzTarget) -> [(String, [UInt8])] {
        let dir = "\(root)/\(kind)/\(target.rawValue)"
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted()
        return names.compactMap { name in FileManager.default.contents(atPath: "\(dir)/\(name)").map { (name, Array($0)) } }
    }

    @Test(arguments: FuzzTarget.allCases)
    func everySeedReachesPastItsParser(_ target: FuzzTarget) {
        let seeds = Self.inputs("corpus", target)
        #expect(seeds.count >= 2, "\(target.rawValue) has \(seeds.count) seeds")
        for (name, bytes) in seeds {
            let outcome = target.run(bytes)
            print("\(target.rawValue)/\(name): \(outcome)")
            #expect(outcome.accepted, "\(target.rawValue)/\(name): \(outcome)")
            #expect(FuzzSeeds.reachesItsDepth(target, outcome), "\(target.rawValue)/\(name): \(outcome)")
        }
    }

    /// Each input that crashed a target before its fix (named after what it found). Running to
    /// the end is the check; what each should now say is asserted beside it (the module's own
    /// tests, or this suite for the analysis image).
    @Test(arguments: FuzzTarget.allCases)
    func everyCrashFoundRunsToItsEnd(_ target: FuzzTarget) {
        for (name, bytes) in Self.inputs("crashes", target) {
            print("\(target.rawValue)/\(name): \(target.run(bytes))")
        }
    }

    /// Found by fuzzing the analysis (Tests/Fuzz/crashes/analysis): a lateral image of 96
    /// channels × 229 lines of 1.5 mm whose cut bodies' edges lay past its last row trapped the
    /// morphometry building the rows between them; the daemon analyses every lateral scan in
    /// its own process. Now the image is measured, or refused with why.
    @Test func aLateralBodyEdgePastTheLastRowIsMeasuredNotATrap() throws {
        let input = try #require(Self.inputs("crashes", .analysis).first { $0.0 == "lateral-body-edge-past-the-last-row.img" })
        let scan = try #require(AnalysisImage.scan(from: input.1))
        #expect(scan.geometry.channels == 96 && scan.geometry.lines == 229)
        let outcome = FuzzTarget.analysis.run(input.1)
        #expect(outcome == .accepted("lateral_spine: not analysed: no whole vertebral body in the lateral image"))
    }

    /// Found by fuzzing the scene files (Tests/Fuzz/crashes/scene, after 827,272 executions):
    /// `{"patient": 2.0}` laid a number over the default patient, and Foundation trapped when
    /// asked to write it as JSON; `dexa-sim` reads these files. Now refused, with why, and the
    /// same for an exam protocol whose overlay is not an object.
    @Test func aPatientThatIsANumberIsRefusedNotATrap() throws {
        let input = try #require(Self.inputs("crashes", .scene).first { $0.0 == "patient-a-number" })
        #expect(String(decoding: input.1, as: UTF8.self).contains("\"patient\""))
        let outcome = FuzzTarget.scene.run(input.1)
        #expect(!outcome.accepted && "\(outcome)".contains("expected a JSON object"), "\(outcome)")
        for overlay: Any in [2.0, "text", NSNull(), [1, 2]] {
            #expect(throws: (any Error).self) { try JSONOverlay.decode(PatientSpec.self, defaults: PatientSpec(), overlay: overlay) }
        }
    }

    /// The rpc target decodes every method's parameters, with the daemon's own descriptors.
    @Test func theRPCTargetKnowsEveryMethod() {
        #expect(ControlTargets.probes.map(\.method) == ControlMethod.allCases)
    }

    /// The analysis target's image form keeps a scan's pixels to its rounding.
    @Test func anAnalysisImageReadsBackAsWritten() throws {
        var scan = DecomposedScan(geometry: .init(channels: 10, lines: 3, pitchMM: 2, lineStepMM: -1.5, carriageXMM: 200, firstLineYMM: 600),
                                  provenance: .init(capture: nil, scanID: 1, calibration: "test", region: "left_hip"))
        for i in scan.bone.indices {
            scan.bone[i] = i == 7 ? .nan : Float(i) * 0.05
            scan.softTissue[i] = 12
            scan.marks[i] = i % 3 == 0 ? .bone : []
        }
        scan.rowPresent = [true, false, true]
        let bytes = try #require(AnalysisImage.bytes(of: scan))
        #expect(bytes.count == 4 + 2 * 30)
        let back = try #require(AnalysisImage.scan(from: bytes))
        #expect(back.geometry == scan.geometry)
        #expect(back.provenance.region == "left_hip")
        #expect(back.rowPresent == scan.rowPresent)
        #expect(back.marks == scan.marks)
        #expect(back.bone[7].isNaN)
        for i in scan.bone.indices where i != 7 { #expect(abs(back.bone[i] - scan.bone[i]) < 0.006) }
        #expect(back.softTissue.allSatisfy { $0 == 12 })
        // Fewer than four bytes is no image; a partial row is dropped.
        #expect(AnalysisImage.scan(from: [0, 2, 3]) == nil)
        #expect(AnalysisImage.scan(from: bytes + [1, 2, 3])?.geometry.lines == 3)
    }
}
