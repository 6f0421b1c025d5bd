@testable import DXAnalysis
import DXDecomposition
import DXProtocol
import DXSimulator
import Foundation
import Testing

/// The standard exam's lateral spine: 380 lines of 1 mm from y 320 mm, 0.5 s at 0.8 mA, the
/// arm at 90° (ExamProtocol.standard).
let lateralScan = ScanConfiguration(scanID: 4, mode: .dual, xUm: 185_000, yStartUm: 320_000, lineCount: 380, lineStepUm: 1000,
                                    linePeriodUs: 500_000, tubeCurrentUA: 800, linesPerFrame: 1)

@Suite("Vertebral fracture assessment", .serialized)
struct VFATests {
    /// `DEXA_VFA_PHYSICS=cdte`: the study on the second physics model; `DEXA_VFA_MODE=single`:
    /// on single-energy scans (documented runs).
    static func scan(_ spec: PatientSpec, noise: UInt64, mode: ScanMode? = nil) async throws -> DecomposedScan {
        let scanner = ProcessInfo.processInfo.environment["DEXA_VFA_PHYSICS"] == "cdte" ? SharedScanner.cdte : SharedScanner.shared
        var config = lateralScan
        config.mode = mode ?? (ProcessInfo.processInfo.environment["DEXA_VFA_MODE"] == "single" ? .single : .dual)
        return try await scanner.scan(spec, noise: noise, config, region: "lateral_spine", armAngleX10: 900)
    }

    /// The study's documented runs (the second physics model, single-energy scans) scan through
    /// `scan` too: the tests made from seeds of the first model's dual-energy study skip them.
    static var documentedRun: Bool {
        let environment = ProcessInfo.processInfo.environment
        return environment["DEXA_VFA_PHYSICS"] == "cdte" || environment["DEXA_VFA_MODE"] == "single"
    }

    /// The standard patient, no fracture: T4–L4 found, labelled, every height within 1 mm of
    /// the scene's, every vertebra grade 0.
    @Test func theStandardPatientsSpine() async throws {
        let spec = PatientSpec()
        let scan = try await Self.scan(spec, noise: 1)
        let m = try VertebralMorphometry.measure(scan)
        ImageDump.vfa(scan, m, name: "vfa-standard")
        for truth in spec.thoracolumbar {
            let v = try #require(m.vertebra(truth.name))
            print(String(format: "%@: %@ a %.1f/%.1f m %.1f/%.1f p %.1f/%.1f tilt %.1f/%.1f grade %d", truth.name, v.readable ? "read" : (v.reason ?? ""),
                         v.anteriorMM ?? .nan, truth.anteriorMM, v.middleMM ?? .nan, truth.middleMM, v.posteriorMM ?? .nan, truth.posteriorMM,
                         v.tiltDegrees ?? .nan, truth.tiltDegrees, v.grade ?? -1))
            #expect(v.readable, "\(truth.name): \(v.reason ?? "")")
            #expect(v.grade == 0)
            for (got, want) in [(v.anteriorMM, truth.anteriorMM), (v.middleMM, truth.middleMM), (v.posteriorMM, truth.posteriorMM)] {
                #expect(abs((got ?? .nan) - want) <= 1.5, "\(truth.name)")
            }
        }
        print(m.warnings)
        #expect(!m.warnings.contains { $0.code == "labels_disagree" })
    }

    /// A patient who moved 1.5 mm (under the protocol's 2 mm stop) across the table while T9
    /// was scanned: the stillness check finds the movement where it began and the analysis keeps
    /// it with the scan; T9 is still read right (its heights run along the scan, which such a
    /// movement does not stretch) and the result names it as crossed, so that the reader checks
    /// its points. The same movement in the disc between L2 and L3 crosses no body.
    @Test func aPatientWhoMoved() async throws {
        let still = PatientSpec()
        func body(_ name: String) throws -> PatientSpec.LateralVertebra { try #require(still.thoracolumbar.first { $0.name == name }) }
        let t9 = try body("T9"), l2 = try body("L2"), l3 = try body("L3")
        for (y, across) in [(t9.topMM + t9.posteriorMM / 2, "T9"), ((l2.topMM + l2.posteriorMM + l3.topMM) / 2, nil)] {
            var spec = still
            spec.motion = .init(fromYMM: y, shiftXMM: 1.5)
            let scan = try await Self.scan(spec, noise: 3)
            let move = try #require(scan.motion.first { abs(scan.geometry.y(row: $0.line) - y) <= 3 }, "\(scan.motion) for y \(y)")
            #expect(abs(move.shiftMM - 1.5) <= 0.5, "\(move)")
            let m = try VertebralMorphometry.measure(scan)
            let warning = try #require(m.warnings.first { $0.code == "patient_moved" })
            print(warning.message)
            #expect(warning.message.contains(String(format: "%+.1f mm at line %d", move.shiftMM, move.line)))
            if let across { #expect(warning.message.contains(across) && warning.message.contains("(measured: check")) }
            #expect(!warning.message.contains("L2") && !warning.message.contains("L3"))
            for truth in spec.thoracolumbar {
                let v = try #require(m.vertebra(truth.name))
                #expect(v.readable, "\(truth.name): \(v.reason ?? "")")
                #expect(v.grade == 0, "\(truth.name)")
                for (got, want) in [(v.anteriorMM, truth.anteriorMM), (v.middleMM, truth.middleMM), (v.posteriorMM, truth.posteriorMM)] {
                    #expect(abs((got ?? .nan) - want) <= 1.5, "\(truth.name)")
                }
            }
        }
    }

    /// Still patients' lateral spines: the stillness check must not stop the scan (a movement
    /// of 2 mm or more, the protocol's limit) nor flag a movement. The standard patient under six
    /// noise draws and 25 varied patients of each lateral anatomy (with their fractures).
    @Test func stillLateralSpinesRaiseNoAlarm() async throws {
        var flagged: [String] = [], stopped: [String] = [], scans = 0
        func look(_ name: String, _ scan: DecomposedScan) {
            scans += 1
            guard !scan.motion.isEmpty else { return }
            let moves = scan.motion.map { String(format: "%+.1f mm at line %d", $0.shiftMM, $0.line) }.joined(separator: ", ")
            flagged.append("\(name): \(moves)")
            if scan.motion.contains(where: { abs($0.shiftMM) >= 2 /* the standard protocol's motion_limit_mm */ }) { stopped.append(name) }
        }
        for noise in UInt64(1)...6 { look("standard, noise \(noise)", try await Self.scan(PatientSpec(), noise: noise)) }
        for anatomy in [PatientVariety.LateralAnatomy.bodiesAndRibs, .full] {
            for seed in UInt64(1)...25 {
                look("\(anatomy.rawValue) \(seed)", try await Self.scan(PatientVariety.patient(seed: seed, lateralFractures: nil, lateralAnatomy: anatomy), noise: seed))
            }
        }
        print("still lateral spines: \(flagged.count) of \(scans) flagged, \(stopped.count) at the stop limit: \(flagged)")
        #expect(scans == 56)
        withKnownIssue("the stillness check on the lateral spine: ribs and tilted endplates read as movements (docs/exam.md)") {
            #expect(flagged.isEmpty)
            #expect(stopped.isEmpty)
        }
    }

    /// The grading rule at its boundaries, for each type (the issue's 19, 21, 24, 26, 39 and
    /// 41 %): a body of 20 mm among neighbours of 20 mm with one height lost.
    @Test(arguments: [(0.19, 0), (0.21, 1), (0.24, 1), (0.26, 2), (0.39, 2), (0.41, 3)])
    func gradingAtTheBoundaries(loss: Double, grade: Int) {
        let names = VertebralMorphometry.levels
        func spine(_ body: VertebralBody) -> [VertebralBody] {
            names.map { $0 == "T8" ? body : VertebralBody(name: $0, anteriorMM: 20, middleMM: 20, posteriorMM: 20) }
        }
        let h = 20 * (1 - loss)
        for (kind, body) in [(VertebralBody.Kind.wedge, VertebralBody(name: "T8", anteriorMM: h, middleMM: 20, posteriorMM: 20)),
                             (.biconcave, VertebralBody(name: "T8", anteriorMM: 20, middleMM: h, posteriorMM: 20)),
                             (.crush, VertebralBody(name: "T8", anteriorMM: h, middleMM: h, posteriorMM: h))] {
            let graded = VertebralMorphometry.grade(spine(body))
            let t8 = graded[names.firstIndex(of: "T8") ?? 0]
            #expect(t8.grade == grade, "\(kind) \(loss)")
            #expect(t8.kind == (grade > 0 ? kind : nil), "\(kind) \(loss)")
            #expect(abs((t8.heightLoss ?? 0) - loss) < 1e-9, "\(kind) \(loss)")
            #expect(graded.filter { $0.name != "T8" }.allSatisfy { $0.grade == 0 })
        }
        // A reversed wedge (the posterior lost) is a wedge too; an unreadable body is never graded.
        let reversed = VertebralMorphometry.grade(spine(VertebralBody(name: "T8", anteriorMM: 20, middleMM: 20, posteriorMM: h)))
        #expect(reversed[names.firstIndex(of: "T8") ?? 0].grade == grade)
        let unread = VertebralMorphometry.grade(spine(VertebralBody(name: "T8", unreadable: "a rib over it")))
        #expect(unread[names.firstIndex(of: "T8") ?? 0].grade == nil)
    }

    /// A body with a corner's height uncertain (a rib over that corner): graded only when the
    /// heights read already show a fracture, as the least grade it can have; otherwise
    /// unreadable, never grade 0. With both corners uncertain only its own shape counts,
    /// against the least its corners can be (not its middle against the expected height: in
    /// the study such bodies' middles were misread short by 5–7 mm).
    @Test func aCornerUncertainIsGradedOnlyOnWhatWasRead() throws {
        let names = VertebralMorphometry.levels
        func spine(_ body: VertebralBody) -> [VertebralBody] {
            names.map { $0 == "T8" ? body : VertebralBody(name: $0, anteriorMM: 20, middleMM: 20, posteriorMM: 20) }
        }
        func partial(a: Double?, m: Double, p: Double?, atLeast: Double? = nil) -> VertebralBody {
            var b = VertebralBody(name: "T8", anteriorMM: a ?? 0, middleMM: m, posteriorMM: p ?? 0)
            if a == nil { b.anteriorMM = nil }
            if p == nil { b.posteriorMM = nil }
            b.uncertainHeight = [a == nil ? "anterior" : nil, p == nil ? "posterior" : nil].compactMap { $0 }.joined(separator: "_")
            b.cornerAtLeastMM = atLeast
            b.reason = "a corner's height is uncertain"
            return b
        }
        func t8(_ b: VertebralBody) -> VertebralBody { VertebralMorphometry.grade(spine(b))[names.firstIndex(of: "T8") ?? 0] }
        // The posterior unread, the middle 30 % under the anterior: grade 2 biconcave at least.
        // Its type is not told: the corner unread may be the low one.
        let biconcave = t8(partial(a: 20, m: 14, p: nil))
        #expect(biconcave.readable && biconcave.grade == 2 && biconcave.kind == nil && biconcave.posteriorMM == nil)
        #expect(biconcave.reason?.contains("at least grade 2, its type not told") == true, "\(biconcave.reason ?? "")")
        // The middle 45 % under the expected (20 mm) with the anterior low too: grade 3.
        let crush = t8(partial(a: 12, m: 11, p: nil))
        #expect(crush.grade == 3 && crush.kind == nil)
        // A wedge with its posterior corner unread (the outside review's example): the middle
        // short against the expected height gives a grade, not a type.
        let wedge = t8(partial(a: 14, m: 15, p: nil))
        #expect(wedge.grade == 2 && wedge.kind == nil)
        // Nothing lost in what was read: a wedge cannot be excluded: unreadable, not grade 0.
        let unsure = t8(partial(a: 19.5, m: 19, p: nil))
        #expect(!unsure.readable && unsure.grade == nil && unsure.reason?.contains("wedge cannot be excluded") == true)
        // Both corners uncertain: the shape against the least the corners can be.
        let both = t8(partial(a: nil, m: 10, p: nil, atLeast: 18))
        #expect(both.readable && both.grade == 3 && both.kind == nil && both.uncertainHeight == "anterior_posterior" && both.cornerAtLeastMM == nil)
        // Every height short (an edge taken for the endplates): no fracture from the middle
        // against the expected height alone.
        let short = t8(partial(a: nil, m: 9, p: nil, atLeast: 8.5))
        #expect(!short.readable && short.grade == nil)
        // The JSON names the corner and leaves its height out; the bound stays inside.
        let json = String(decoding: try JSONEncoder().encode(biconcave), as: UTF8.self)
        #expect(json.contains("\"uncertain_height\":\"posterior\"") && !json.contains("posterior_mm\":") && !json.contains("cornerAtLeast") && !json.contains("at_least_mm"), "\(json)")
    }

    /// "≥" goes with a grade found on a corner uncertain wherever it is shown: the grade, and the
    /// measured grade under a reader's.
    @Test func theLeastAGradeCanBeIsShownAsSuch() {
        var b = VertebralBody(name: "T8", anteriorMM: 20, middleMM: 14, posteriorMM: 20)
        #expect(b.gradeShown == nil && b.measuredGradeShown == "—")
        b.grade = 2
        #expect(b.gradeShown == "2")
        b.uncertainHeight = "posterior"
        #expect(b.gradeShown == "≥2")
        // The reader's grade over it: shown as the reader gave it; the measured one keeps "≥".
        b.measuredGrade = 2
        b.grade = 3
        b.gradeBy = "reader"
        #expect(b.gradeShown == "3" && b.measuredGradeShown == "≥2")
        b.uncertainHeight = nil
        #expect(b.measuredGradeShown == "2")
    }

    /// The full side view of study patient 49: its T4–T7 are joined to the shoulder blade, and
    /// a strip between two ribs over the blade, beside the spine, was read as T5 (a grade 2
    /// crush, every height half the truth). The chain is held to the spine's curve: every body
    /// read lies on its vertebra, and no normal one is called fractured.
    @Test func aStripBetweenRibsOverTheShoulderBladeIsNotABody() async throws {
        let spec = PatientVariety.patient(seed: 49, lateralFractures: nil, lateralAnatomy: .full)
        let m = try VertebralMorphometry.measure(try await Self.scan(spec, noise: 49))
        // The scene's across-position is measured from the spine's own line: compared after the
        // offset the bodies share.
        var read: [(truth: PatientSpec.LateralVertebra, v: VertebralBody, x: Double, y: Double)] = []
        var ribOverCorner = 0
        for truth in spec.thoracolumbar {
            guard let v = m.vertebra(truth.name), v.readable, v.points.count == 6 else { continue }
            read.append((truth, v, v.points.map { $0[0] }.reduce(0, +) / 6, v.points.map { $0[1] }.reduce(0, +) / 6))
        }
        #expect(read.count >= 6)
        let offset = Profile.median(read.map { $0.x - $0.truth.centre.x })
        for (truth, v, x, y) in read {
            #expect(abs(x - truth.centre.x - offset) < 10 && abs(y - truth.centre.y) < 8,
                    "\(truth.name) read at (\(x - offset), \(y)), truth (\(truth.centre.x), \(truth.centre.y))")
            guard truth.grade == 0 else { continue }
            // The known way a normal mid-thoracic body is called fractured on the full side
            // view: a rib over its posterior upper corner reads the posterior height 2–3 mm long,
            // and the body grade-1 biconcave (docs/analysis.md, "The rib's head"). Since the
            // decomposer's memory is averaged (2026-12-07) this scan's T8, unread before (a rib's
            // edge beyond its upper endplate), is read so: posterior 22.2 mm for 19.9.
            if ["T6", "T7", "T8", "T9"].contains(truth.name), v.grade == 1, v.kind == .biconcave, let p = v.posteriorMM,
               (1.5...3.5).contains(p - truth.posteriorMM), let an = v.anteriorMM, let mi = v.middleMM,
               abs(an - truth.anteriorMM) < 1.5, abs(mi - truth.middleMM) < 1.5 {
                ribOverCorner += 1
                withKnownIssue("\(truth.name): a rib over the posterior corner, posterior \(p) mm for \(truth.posteriorMM) (issue 12)") {
                    #expect((v.grade ?? 0) == 0)
                }
            } else {
                #expect((v.grade ?? 0) == 0, "\(truth.name) called grade \(v.grade ?? 0)")
            }
        }
        #expect(ribOverCorner <= 1, "\(ribOverCorner) bodies with a rib over the posterior corner called fractured")
    }

    /// Two bodies joined across their disc (seed 11 of the full side view: T7 and T8, a rib and
    /// the shoulder blade's border over the disc between them, stood as one part 53 mm tall at
    /// half the level, under the 60 mm that split a part before). The part is over 1.6 times the
    /// bodies' median height, so it is thresholded again and counted as two: the levels above
    /// stay named (until 2026-12-06 T5–T8 were "level uncertain" and T4 "not found"), each body
    /// read above them lies on its own vertebra, and the two joined ones are read on theirs,
    /// within 1.5 mm (unreadable, not graded, until joined bodies were read, 2026-12-07). (Until the baseline was opened in the fat model's terms, 2026-12-07, T4 and T5
    /// were both read; since, T4 under the shoulder blade is not found and T5's endplates are
    /// unclear, and T6 is read: docs/physics.md, "The neck's own bias".)
    @Test func twoBodiesJoinedAcrossTheirDiscAreCountedAsTwo() async throws {
        guard !Self.documentedRun else { return }
        let spec = PatientVariety.patient(seed: 11, lateralFractures: nil, lateralAnatomy: .full)
        let m = try VertebralMorphometry.measure(try await Self.scan(spec, noise: 11))
        #expect(!m.warnings.contains { $0.code == "labels_uncertain" }, "\(m.warnings.map(\.message))")
        // T6 is read, on its own vertebra; T4 and T5, where read, on theirs.
        #expect(m.vertebra("T6")?.readable == true, "T6: \(m.vertebra("T6")?.reason ?? "missing")")
        for name in ["T4", "T5", "T6"] {
            let v = try #require(m.vertebra(name))
            let truth = try #require(spec.thoracolumbar.first { $0.name == name })
            guard v.readable else { continue }
            let centre = v.points.map { $0[1] }.reduce(0, +) / Double(max(1, v.points.count))
            #expect(abs(centre - truth.centre.y) < 8, "\(name) named on another body")
        }
        // The two pieces, read since 2026-12-07 (a joined body is read like any other, its own
        // tests deciding): each on its own vertebra, its heights within 1.5 mm.
        for name in ["T7", "T8"] {
            let v = try #require(m.vertebra(name))
            let truth = try #require(spec.thoracolumbar.first { $0.name == name })
            #expect(v.readable, "\(name): \(v.reason ?? "")")
            // No fracture called that is not there (T7 is whole; T8's grade-1 crush reads 16 %:
            // grade 0, a miss the study counts, not a false call).
            #expect((v.grade ?? 0) <= truth.grade, "\(name): grade \(v.grade ?? 0) for \(truth.grade)")
            let centre = v.points.map { $0[1] }.reduce(0, +) / Double(max(1, v.points.count))
            #expect(abs(centre - truth.centre.y) < 8, "\(name) named on another body")
            for (got, want) in [(v.anteriorMM, truth.anteriorMM), (v.middleMM, truth.middleMM), (v.posteriorMM, truth.posteriorMM)] {
                #expect(abs((got ?? .nan) - want) <= 1.5, "\(name): \(got ?? .nan) mm for \(want)")
            }
        }
    }

    /// A rib's head lies over the disc at a thoracic body's posterior corners (where it
    /// articulates): bone beyond the endplate there is no sign of a wrong edge. Seed 14 of the
    /// full side view: T5 and T6 (a grade 3 biconcave fracture) were left unread for it; now
    /// read, the fracture found, and every height read within 1.5 mm.
    @Test func aRibHeadAtTheBackCornerIsNoWrongEdge() async throws {
        guard !Self.documentedRun else { return }
        let spec = PatientVariety.patient(seed: 14, lateralFractures: nil, lateralAnatomy: .full)
        let m = try VertebralMorphometry.measure(try await Self.scan(spec, noise: 14))
        let t6truth = try #require(spec.thoracolumbar.first { $0.name == "T6" })
        #expect(t6truth.grade == 3)
        for name in ["T5", "T6"] {
            let v = try #require(m.vertebra(name))
            let truth = try #require(spec.thoracolumbar.first { $0.name == name })
            #expect(v.readable, "\(name): \(v.reason ?? "")")
            #expect(v.grade == truth.grade, "\(name) graded \(v.grade ?? -1), truth \(truth.grade)")
            for (got, want) in [(v.anteriorMM, truth.anteriorMM), (v.middleMM, truth.middleMM), (v.posteriorMM, truth.posteriorMM)] {
                #expect(abs((got ?? .nan) - want) <= 1.5, "\(name)")
            }
        }
    }

    /// A scan stopped half-way: with no L4 and no lumbar body below the ribs, the bodies
    /// cannot be named, and nothing is graded; stopped below T12, they are named from its rib.
    @Test func aScanStoppedHalfWay() async throws {
        let half = try await SharedScanner.shared.scan(PatientSpec(), noise: 21, lateralScan, region: "lateral_spine", armAngleX10: 900,
                                                       keep: { $0.index < 190 })
        #expect(throws: SiteAnalysisError.self) { try VertebralMorphometry.measure(half) }
        if case .failure(let e) = SiteAnalysis.analyze(half, patient: nil) { print(e) } else { Issue.record("a half scan was named") }
        // Stopped inside L3: T12 has a rib, L1 and L2 below it have none.
        let spec = PatientSpec()
        let l3 = try #require(spec.thoracolumbar.first { $0.name == "L3" })
        let stop = UInt32(l3.topMM + 5 - 320)
        let partial = try await SharedScanner.shared.scan(spec, noise: 23, lateralScan, region: "lateral_spine", armAngleX10: 900,
                                                          keep: { $0.index < stop })
        let m = try VertebralMorphometry.measure(partial)
        print(m.summary, m.warnings.map(\.code))
        #expect(m.warnings.contains { $0.code == "labels_from_ribs" } && m.warnings.contains { $0.code == "scan_incomplete" })
        for truth in spec.thoracolumbar {
            let v = try #require(m.vertebra(truth.name))
            if ["L3", "L4"].contains(truth.name) { #expect(!v.readable && v.grade == nil) } else {
                #expect(v.readable && v.grade == 0, "\(truth.name): \(v.reason ?? "")")
                #expect(abs((v.middleMM ?? 0) - truth.middleMM) <= 1.5, "\(truth.name)")
            }
        }
    }

    /// Lines lost through the middle of T10: its two halves count as one body, T10 is not
    /// read (cut by the missing lines), and every other level keeps its name and its number.
    @Test func linesLostThroughABody() async throws {
        let spec = PatientSpec()
        let t10 = try #require(spec.thoracolumbar.first { $0.name == "T10" })
        let lost = UInt32(t10.topMM + 8 - 320)..<UInt32(t10.topMM + 12 - 320)
        let scan = try await SharedScanner.shared.scan(spec, noise: 24, lateralScan, region: "lateral_spine", armAngleX10: 900,
                                                       keep: { !lost.contains($0.index) })
        let m = try VertebralMorphometry.measure(scan)
        print(m.summary, m.warnings.map(\.code))
        for truth in spec.thoracolumbar {
            let v = try #require(m.vertebra(truth.name))
            if truth.name == "T10" { #expect(!v.readable && v.grade == nil); continue }
            #expect(v.readable, "\(truth.name): \(v.reason ?? "")")
            let centre = v.points.map { $0[1] }.reduce(0, +) / Double(max(1, v.points.count))
            #expect(abs(centre - truth.centre.y) < 8, "\(truth.name) named on another body")
        }
    }

    /// No spine in the image: one sentence, no number.
    @Test func noSpineInTheField() async throws {
        var spec = PatientSpec()
        spec.thoracolumbar = []
        let scan = try await Self.scan(spec, noise: 22)
        #expect(throws: SiteAnalysisError.self) { try VertebralMorphometry.measure(scan) }
        if case .failure(let e) = SiteAnalysis.analyze(scan, patient: nil) { print(e) } else { Issue.record("a spine was found where none is") }
    }

    /// Garbage in: images of noise, NaN, infinities, huge values, stripes, odd sizes and pixel
    /// pitches. Each is refused with one sentence or measured; none crashes, and whatever is
    /// graded was read.
    @Test func garbageImagesNeverCrash() {
        var seeded = UInt64(0x5EED)
        func next() -> Double { seeded = seeded &* 6364136223846793005 &+ 1442695040888963407; return Double(seeded >> 11) * 0x1p-53 }
        var refused = 0, measured = 0
        for trial in 0..<200 {
            let channels = [1, 8, 40, 144, 200][trial % 5], lines = [1, 60, 380][trial % 3]
            let pitch = [0.1, 0.5, 1.0, 1.5, 3.0, .nan][(trial / 7) % 6]
            let g = DecomposedScan.Geometry(channels: channels, lines: lines, pitchMM: pitch, lineStepMM: trial % 7 == 0 ? -1 : 1, carriageXMM: 185,
                                            firstLineYMM: 320)
            var scan = DecomposedScan(geometry: g, provenance: .init(capture: nil, scanID: 1, calibration: "test", region: "lateral_spine"))
            for i in scan.bone.indices {
                let r = i / max(1, channels)
                let v: Double
                switch trial % 6 {
                case 0: v = next() * 2
                case 1: v = next() < 0.3 ? .nan : next() * 1.5
                case 2: v = next() < 0.01 ? .infinity : (r / 20 % 2 == 0 ? 1.0 : 0.0)
                case 3: v = next() < 0.5 ? 1e30 : -1e30
                case 4, 5 where trial % 12 < 6:
                    // Blocks like bodies, 20 rows tall and 30 columns deep, 8 rows apart.
                    let c = i % max(1, channels)
                    v = (r % 28 < 20 && c > channels / 3 && c < channels / 3 + 30) ? 0.9 + 0.05 * next() : 0.03 * next()
                default: v = Double(Float.greatestFiniteMagnitude) * (next() - 0.5)
                }
                scan.bone[i] = Float(v)
                scan.softTissue[i] = 20
                scan.fatFraction[i] = 0.3
                if next() < 0.05 { scan.marks[i] = .unmeasured }
            }
            for r in scan.rowPresent.indices { scan.rowPresent[r] = trial % 4 != 0 || next() > 0.02 }
            do {
                let m = try VertebralMorphometry.measure(scan)
                measured += 1
                for v in m.vertebrae where v.grade != nil { #expect(v.readable && v.anteriorMM != nil && v.points.count == 6) }
            } catch {
                refused += 1
                #expect(!error.description.isEmpty)
            }
        }
        print("garbage lateral images: \(refused) refused, \(measured) measured")
        #expect(refused + measured == 200 && measured > 0)  // some reach the measurement, not only the checks
    }

    /// Genant's bands: a loss of 19.9 % is grade 0, 20 % grade 1, 25 % grade 2, 40 % grade 3.
    @Test func genantBands() {
        #expect(VertebralMorphometry.grade(loss: 0.199) == 0)
        #expect(VertebralMorphometry.grade(loss: 0.20) == 1)
        #expect(VertebralMorphometry.grade(loss: 0.249) == 1)
        #expect(VertebralMorphometry.grade(loss: 0.25) == 2)
        #expect(VertebralMorphometry.grade(loss: 0.399) == 2)
        #expect(VertebralMorphometry.grade(loss: 0.40) == 3)
    }

    /// The reader's corrections (`ROICorrection.vfaPoints`, `vfaGrades`): points placed by hand
    /// give the heights and grade, the others are graded again with them; a grade set by eye
    /// keeps the measured one beside it, also on a body the analysis could not read; points
    /// that cannot be a body's, or lie outside the image, are refused.
    @Test func readersPointsAndGrades() async throws {
        let scan = try await Self.scan(PatientSpec(), noise: 1)
        let auto = try VertebralMorphometry.measure(scan)
        let t8 = try #require(auto.vertebra("T8"))
        var p = t8.points
        p[2][1] += 8  // the upper anterior point 8 mm down: a wedge of about 40 %
        let placed = ROICorrection(vfaPoints: ["T8": p], vfaGrades: ["L2": .init(grade: 1, type: .biconcave)])
        #expect(placed.problem(site: "lateral_spine") == nil)
        let m = try VertebralMorphometry.measure(scan, correction: placed)
        let v = try #require(m.vertebra("T8"))
        #expect(v.pointsBy == "reader" && v.kind == .wedge && (v.grade ?? 0) >= 2, "\(v)")
        #expect(abs((v.posteriorMM ?? 0) - (t8.posteriorMM ?? 0)) < 1.0, "the posterior height stays")
        let l2 = try #require(m.vertebra("L2"))
        #expect(l2.grade == 1 && l2.kind == .biconcave && l2.gradeBy == "reader" && l2.measuredGrade == 0)
        #expect(m.summary.contains("L2 grade 1 biconcave (the reader's)"), "\(m.summary)")
        #expect(m.vertebra("T9") == auto.vertebra("T9").map { var b = $0; b.expectedMM = m.vertebra("T9")?.expectedMM; return b })
        #expect(!m.warnings.contains { $0.code == "points_on_another_body" }, "T8's own points moved")
        // T8's points placed on the body labelled T9: applied as the reader's, and said.
        let t9 = try #require(auto.vertebra("T9"))
        let onT9 = try VertebralMorphometry.measure(scan, correction: ROICorrection(vfaPoints: ["T8": t9.points]))
        let said = try #require(onT9.warnings.first { $0.code == "points_on_another_body" })
        #expect(said.message.hasPrefix("T8's points lie on the body the analysis labelled T9") && onT9.vertebra("T8")?.pointsBy == "reader", "\(said)")
        // A body that was not read can be graded by eye; its heights stay unmeasured.
        // (The scan stopped inside L3, as in `aScanStoppedHalfWay`: L3 unread.)
        let spec = PatientSpec()
        let l3 = try #require(spec.thoracolumbar.first { $0.name == "L3" })
        let stop = UInt32(l3.topMM + 5 - 320)
        let partial = try await SharedScanner.shared.scan(spec, noise: 23, lateralScan, region: "lateral_spine", armAngleX10: 900,
                                                          keep: { $0.index < stop })
        #expect(try VertebralMorphometry.measure(partial).vertebra("L3")?.readable == false)
        let g = try VertebralMorphometry.measure(partial, correction: ROICorrection(vfaGrades: ["L3": .init(grade: 3, type: .crush)]))
        let b = try #require(g.vertebra("L3"))
        #expect(b.readable && b.grade == 3 && b.measuredGrade == nil && b.anteriorMM == nil && b.gradeBy == "reader", "\(b)")
        // Refused: the wrong count, upside down, too flat, reversed, an unknown level, a grade
        // out of range or without its type, points outside the image, on another site.
        let bad: [ROICorrection] = [
            ROICorrection(vfaPoints: ["T8": Array(p.prefix(5))]),
            ROICorrection(vfaPoints: ["T8": [p[3], p[4], p[5], p[0], p[1], p[2]]]),
            ROICorrection(vfaPoints: ["T8": p.enumerated().map { $0.offset < 3 ? $0.element : [$0.element[0], p[$0.offset - 3][1] + 1] }]),
            ROICorrection(vfaPoints: ["T8": [p[2], p[1], p[0], p[5], p[4], p[3]]]),
            ROICorrection(vfaPoints: ["T8": p.map { [$0[0], .nan] }]),
            ROICorrection(vfaPoints: ["T3": p]),
            ROICorrection(vfaGrades: ["T8": .init(grade: 4, type: .wedge)]),
            ROICorrection(vfaGrades: ["T8": .init(grade: 1, type: nil)]),
        ]
        for c in bad { #expect(c.problem(site: "lateral_spine") != nil, "\(c)") }
        #expect(ROICorrection(vfaPoints: ["T8": p]).problem(site: "ap_spine") != nil)
        #expect(ROICorrection(neckBoxShiftMM: 2).problem(site: "lateral_spine") != nil)
        #expect(throws: SiteAnalysisError.self) { try VertebralMorphometry.measure(scan, correction: ROICorrection(vfaPoints: ["T8": p.map { [$0[0] + 900, $0[1]] }])) }
        if case .success = SiteAnalysis.analyze(scan, patient: nil, correction: ROICorrection(vfaGrades: ["T8": .init(grade: 9, type: .wedge)])) {
            Issue.record("a grade of 9 was applied")
        }
    }

    /// A height's standard error (which decides whether it is graded) is what it claims: over
    /// 2000 endplates of 25 samples with 0.5 mm noise, the SD of the fitted value at the
    /// body's front, middle and back matches `standardError(at:)` within 10 %.
    @Test func endplateStandardErrors() throws {
        var seed: UInt64 = 7
        func gaussian() -> Double {
            func uniform() -> Double { seed = seed &* 6364136223846793005 &+ 1442695040888963407; return (Double(seed >> 11) + 0.5) * 0x1p-53 }
            return (-2 * log(uniform())).squareRoot() * cos(2 * .pi * uniform())
        }
        let us = (0..<25).map { -0.4 + 0.8 * Double($0) / 24 }
        var values: [[Double]] = [[], [], []], claimed: [[Double]] = [[], [], []]
        for _ in 0..<2000 {
            let q = try #require(Quadratic.fit(us, us.map { 10 + 2 * $0 - 3 * $0 * $0 + 0.5 * gaussian() }))
            for (k, w) in [-0.5, 0, 0.5].enumerated() {
                values[k].append(q.value(at: w))
                claimed[k].append(q.standardError(at: w))
            }
        }
        for k in 0..<3 {
            let mean = values[k].reduce(0, +) / 2000
            let sd = (values[k].map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 1999).squareRoot()
            let se = claimed[k].reduce(0, +) / 2000
            let w: [Double] = [-0.5, 0, 0.5]
            print(String(format: "endplate at %+.1f: SD %.3f mm, claimed %.3f", w[k], sd, se))
            #expect(abs(se / sd - 1) < 0.1)
        }
        // The ends, extrapolated past the samples, are less sure than the middle.
        #expect(claimed[2].reduce(0, +) > 2 * claimed[1].reduce(0, +))
    }
}

/// VFA over many seeded patients (`PatientVariety`: size, kyphosis, lordosis, ribs, tissue; the
/// bodies' natural variation and mid-thoracic wedging), each with 0–3 fractures of random type
/// and grade.
@Suite("Vertebral fracture assessment over many patients", .serialized)
struct VFAStudyTests {
    /// 50, the issue's number (25 gave 10 of 13 grade-1 fractures found, 77 %, where 50 give
    /// 19 of 23: too few to judge an 80 % target).
    static let patients = Int(ProcessInfo.processInfo.environment["DEXA_VFA_PATIENTS"] ?? "") ?? 50
    /// `DEXA_VFA_ANATOMY=full`: with the shoulder blades, lungs, concave endplates, scoliosis,
    /// osteophytes and metal (a documented run: the targets are not met there yet).
    static let anatomy = PatientVariety.LateralAnatomy(rawValue: ProcessInfo.processInfo.environment["DEXA_VFA_ANATOMY"] ?? "") ?? .bodiesAndRibs

    @Test func lateralSpinesOverManyPatients() async throws {
        var byTruth = [Int: (n: Int, found: Int, exact: Int)]()
        var normal = 0, falsePositive = 0, unreadable = 0, vertebrae = 0, labelled = 0, labelsRight = 0, refused = 0, unreadFractures = 0
        var heightErrors: [Double] = [], typeRight = 0, typed = 0, partlyRead = 0
        // Each height's error apart (anterior, middle, posterior) over the bodies of true grade 0
        // at the rib-head levels (T4–T10) and below them: a corner read long against a middle
        // read true is what calls a normal body biconcave.
        var byHeight: [String: [Double]] = [:]
        var warnings: [String: Int] = [:]
        // `DEXA_VFA_FIRST`: the first seed (1), for a run on patients a choice was not made on.
        let first = UInt64(ProcessInfo.processInfo.environment["DEXA_VFA_FIRST"] ?? "") ?? 1
        for seed in first...(first + UInt64(Self.patients) - 1) {
            let spec = PatientVariety.patient(seed: seed, lateralFractures: nil, lateralAnatomy: Self.anatomy)
            let scan = try await VFATests.scan(spec, noise: seed)
            // A refused scan is an answer too (said, nothing graded): every vertebra unread.
            let m: VFAMeasurement
            do { m = try VertebralMorphometry.measure(scan) } catch {
                print("seed \(seed): refused: \(error)")
                refused += 1
                m = VFAMeasurement(vertebrae: VertebralMorphometry.levels.map { VertebralBody(name: $0, unreadable: error.description) }, warnings: [])
            }
            ImageDump.vfa(scan, m, name: "vfa-study-\(seed)")
            for w in m.warnings { warnings[w.code, default: 0] += 1 }
            for truth in spec.thoracolumbar {
                vertebrae += 1
                // A body read but for one corner (`uncertainHeight`) is graded only when the
                // heights read show a fracture; it counts as read, with the heights it has.
                guard let v = m.vertebra(truth.name), v.readable, let mid = v.middleMM,
                      v.uncertainHeight != nil || (v.anteriorMM != nil && v.posteriorMM != nil) else {
                    unreadable += 1
                    // A fracture that could not be read is not found: it counts against the
                    // finding rate (the reader is told the level is unread, not that it is whole).
                    var t = byTruth[truth.grade] ?? (0, 0, 0)
                    t.n += 1
                    byTruth[truth.grade] = t
                    if truth.grade > 0 { unreadFractures += 1 }
                    print("seed \(seed) \(truth.name)\(truth.grade > 0 ? " (\(truth.fracture?.rawValue ?? "") grade \(truth.grade))" : ""): unreadable: \(m.vertebra(truth.name)?.reason ?? "missing")")
                    continue
                }
                // The label: the body measured lies where the scene put this vertebra.
                labelled += 1
                let centre = v.points.map { $0[1] }.reduce(0, +) / 6
                if abs(centre - truth.centre.y) < 8 { labelsRight += 1 } else {
                    print(String(format: "seed %d %@: labelled on a body %.1f mm from where the scene put it", seed, truth.name, centre - truth.centre.y))
                }
                let a = v.anteriorMM ?? .nan, p = v.posteriorMM ?? .nan
                if v.uncertainHeight != nil {
                    partlyRead += 1
                    print(String(format: "seed %d %@ (grade %d): %@ height uncertain, read as grade %d %@", seed, truth.name, truth.grade, v.uncertainHeight ?? "", v.grade ?? 0, v.kind?.rawValue ?? ""))
                }
                heightErrors += [a - truth.anteriorMM, mid - truth.middleMM, p - truth.posteriorMM].filter(\.isFinite)
                if truth.grade == 0 {
                    let ribs = LateralImage.ribHeadLevels.contains(truth.name) ? "T4–T10" : "T11–L4"
                    for (which, e) in [("anterior", a - truth.anteriorMM), ("middle", mid - truth.middleMM), ("posterior", p - truth.posteriorMM)] where e.isFinite {
                        byHeight["\(ribs) \(which)", default: []].append(e)
                    }
                }
                let grade = v.grade ?? 0
                var t = byTruth[truth.grade] ?? (0, 0, 0)
                t.n += 1
                if grade >= 1 { t.found += 1 }
                if grade == truth.grade { t.exact += 1 }
                byTruth[truth.grade] = t
                if truth.grade == 0 {
                    normal += 1
                    if grade >= 1 {
                        falsePositive += 1
                        print(String(format: "seed %d %@: grade %d %@ (%.1f %%) on a normal vertebra: a %.1f/%.1f m %.1f/%.1f p %.1f/%.1f expected %.1f", seed, truth.name, grade,
                                     v.kind?.rawValue ?? "", (v.heightLoss ?? 0) * 100, a, truth.anteriorMM, mid, truth.middleMM, p, truth.posteriorMM, v.expectedMM ?? .nan))
                    }
                } else {
                    if grade >= 1 { typed += 1; if v.kind?.rawValue == truth.fracture?.rawValue { typeRight += 1 } }
                    if grade != truth.grade && ProcessInfo.processInfo.environment["DEXA_TRACE"] != nil {
                        for t in spec.thoracolumbar { if let w = m.vertebra(t.name) { print(String(format: "  %@ truth a %.1f m %.1f p %.1f (grade %d) read a %.1f m %.1f p %.1f expected %.1f", t.name, t.anteriorMM, t.middleMM, t.posteriorMM, t.grade, w.anteriorMM ?? .nan, w.middleMM ?? .nan, w.posteriorMM ?? .nan, w.expectedMM ?? .nan)) } }
                    }
                    if grade != truth.grade {
                        print(String(format: "seed %d %@: %@ grade %d read as %d %@ (%.1f %%)", seed, truth.name, truth.fracture?.rawValue ?? "", truth.grade, grade,
                                     v.kind?.rawValue ?? "", (v.heightLoss ?? 0) * 100))
                    }
                }
            }
        }
        func pct(_ a: Int, _ b: Int) -> Double { b > 0 ? Double(a) / Double(b) * 100 : .nan }
        let sorted = heightErrors.map(abs).sorted()
        let mean = heightErrors.reduce(0, +) / Double(max(1, heightErrors.count))
        let sd = (heightErrors.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(max(1, heightErrors.count))).squareRoot()
        print("VFA study: \(refused) scans refused; \(unreadFractures) fractured vertebrae unread (counted as not found); \(partlyRead) graded without a corner's height")
        print(String(format: "VFA study, %d patients, %d vertebrae: unreadable %d; labels right %d/%d; heights mean %+.2f mm, SD %.2f, 95th %.2f, worst %.2f, within 1.5 mm %.1f %%",
                     Self.patients, vertebrae, unreadable, labelsRight, labelled, mean, sd, sorted[Int(0.95 * Double(sorted.count))], sorted.last ?? .nan,
                     pct(sorted.filter { $0 <= 1.5 }.count, sorted.count)))
        for key in byHeight.keys.sorted() {
            let e = byHeight[key] ?? []
            let m = e.reduce(0, +) / Double(max(1, e.count)), sd = (e.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(max(1, e.count))).squareRoot()
            print(String(format: "VFA study: normal bodies, %@ height: error mean %+.2f mm, SD %.2f (%d)", key, m, sd, e.count))
        }
        for g in 0...3 {
            let t = byTruth[g] ?? (0, 0, 0)
            print(String(format: "VFA study: true grade %d: %d vertebrae, called fractured %d (%.1f %%), same grade %d (%.1f %%)", g, t.n, t.found, pct(t.found, t.n), t.exact, pct(t.exact, t.n)))
        }
        print(String(format: "VFA study: fracture called on %d of %d normal vertebrae (%.2f %%); type right %d/%d; warnings %@", falsePositive, normal,
                     pct(falsePositive, normal), typeRight, typed, warnings.description))
        let severe = [2, 3].map { byTruth[$0] ?? (0, 0, 0) }.reduce((0, 0)) { ($0.0 + $1.n, $0.1 + $1.found) }
        // Asserted on the first physics model with bodies and ribs; the full side view and the
        // second model are documented runs (docs/analysis.md: not met there yet).
        guard Self.anatomy == .bodiesAndRibs, ProcessInfo.processInfo.environment["DEXA_VFA_PHYSICS"] != "cdte",
              ProcessInfo.processInfo.environment["DEXA_VFA_MODE"] != "single" else { return }
        #expect(pct(severe.1, severe.0) >= 95)
        #expect(pct((byTruth[1] ?? (0, 0, 0)).found, (byTruth[1] ?? (0, 0, 0)).n) >= 80)
        #expect(pct(falsePositive, normal) <= 2)
        #expect(pct(labelsRight, labelled) >= 95)
        #expect(pct(sorted.filter { $0 <= 1.5 }.count, sorted.count) >= 95)
    }
}

/// Single-energy lateral scans (mode SINGLE, the high window alone): the image is made from
/// the high window and read by the same morphometry (docs/analysis.md; the study over many
/// patients runs with `DEXA_VFA_MODE=single`).
@Suite("Single-energy lateral scans", .serialized)
struct SingleEnergyLateralTests {
    /// The standard patient's single-energy image: T4–L4 found, labelled and measured within
    /// 1.5 mm, every body grade 0; the result says it was read on a single-energy image. An AP
    /// spine scanned single-energy is refused: it has no density.
    @Test func theStandardPatientsImageReads() async throws {
        let spec = PatientSpec()
        let scan = try await VFATests.scan(spec, noise: 7, mode: .single)
        #expect(scan.provenance.singleEnergy == true)
        let m = try VertebralMorphometry.measure(scan)
        ImageDump.vfa(scan, m, name: "vfa-single-standard")
        for truth in spec.thoracolumbar {
            let v = try #require(m.vertebra(truth.name))
            #expect(v.readable && v.grade == 0, "\(truth.name): \(v.reason ?? "")")
            for (got, want) in [(v.anteriorMM, truth.anteriorMM), (v.middleMM, truth.middleMM), (v.posteriorMM, truth.posteriorMM)] {
                #expect(abs((got ?? .nan) - want) <= 1.5, "\(truth.name)")
            }
        }
        let result = try SiteAnalysis.analyze(scan, patient: nil).get()
        #expect(result.vfa?.vertebrae.count == 13 && result.warnings.contains { $0.code == "single_energy" })
        var ap = scan
        ap.provenance.region = "ap_spine"
        guard case .failure(let apWhy) = SiteAnalysis.analyze(ap, patient: nil) else { Issue.record("a single-energy AP spine was measured"); return }
        #expect(apWhy.message.contains("no bone mineral density"))
    }
}

/// The labels' check on made-up spines (`VertebralMorphometry.unnamedAbove`): bodies top to
/// bottom, T4 to L4, 20 mm apart at T4 growing by a millimetre a level, heights 15–27 mm.
@Suite("The labels' check")
struct LabelCheckTests {
    static let healthy: (centres: [Double], heights: [Double]) = {
        var centres = [300.0], heights = [15.0]
        for k in 1..<13 { centres.append(centres[k - 1] + 20 + Double(k)); heights.append(15 + Double(k)) }
        return (centres, heights)
    }()

    @Test func aHealthySpineIsNamedThroughout() {
        let (c, h) = Self.healthy
        #expect(VertebralMorphometry.unnamedAbove(centres: c, heights: h, anchor: 12) == -1)
        // A body crushed by half (its bottom in place, its top and every body above it down by
        // half its height) shortens the gaps on either side of it to about 0.8: still named.
        var crushed = c
        for k in 0..<6 { crushed[k] += 0.5 * h[6] }
        crushed[6] += 0.25 * h[6]
        #expect(VertebralMorphometry.unnamedAbove(centres: crushed, heights: h, anchor: 12) == -1)
    }

    @Test func aLostBodyLeavesTheLevelsAboveUnnamed() {
        let (c, h) = Self.healthy
        // T8 (index 4) not found, of full height: a gap of two spacings between T7 and T9.
        var centres = c, heights = h
        centres.remove(at: 4); heights.remove(at: 4)
        #expect(VertebralMorphometry.unnamedAbove(centres: centres, heights: heights, anchor: 11) == 3)
        // Collapsed by half before it was lost: the bodies above close up on it (the spine is
        // shorter by half its height), a gap of about 1.6 spacings.
        var collapsed = c
        for k in 0..<4 { collapsed[k] += 0.5 * h[4] }
        collapsed.remove(at: 4)
        let gap = collapsed[4] - collapsed[3], usual = collapsed[5] - collapsed[4]
        #expect(gap / usual > 1.4 && gap / usual < 1.65, "\(gap / usual)")
        #expect(VertebralMorphometry.unnamedAbove(centres: collapsed, heights: heights, anchor: 11) == 3)
    }

    @Test func aPieceTooManyLeavesBothSidesOfItsGapUnnamed() {
        let (c, h) = Self.healthy
        // A piece 7 mm below T7 (index 3): gaps of 0.3 and 0.7 spacings; either of the two may
        // be the piece, so neither, nor anything above, is named.
        var centres = c, heights = h
        centres.insert(c[3] + 7, at: 4); heights.insert(8, at: 4)
        #expect(VertebralMorphometry.unnamedAbove(centres: centres, heights: heights, anchor: 13) == 4)
        // Nearer the body below it (gaps 0.7 then 0.3): the short gap is below the piece.
        centres[4] = c[4] - 7
        #expect(VertebralMorphometry.unnamedAbove(centres: centres, heights: heights, anchor: 13) == 5)
        // Two neighbouring crushes of grade 3 (half their height each): the gap between them is
        // 0.68 of the gaps around it, themselves shortened (0.6 of the healthy spacing): named.
        var crushes = c
        crushes[6] += 0.25 * h[6] + 0.5 * h[7]
        crushes[7] += 0.25 * h[7]
        for k in 0..<6 { crushes[k] += 0.5 * (h[6] + h[7]) }
        #expect(VertebralMorphometry.unnamedAbove(centres: crushes, heights: h, anchor: 12) == -1)
    }

    @Test func twoBodiesMergedAndTheAnchor() {
        let (c, h) = Self.healthy
        // T9 and T10 found as one part: 1.9 heights tall.
        var centres = c, heights = h
        centres[5] = (c[5] + c[6]) / 2; heights[5] = h[5] + h[6] + 4
        centres.remove(at: 6); heights.remove(at: 6)
        #expect(VertebralMorphometry.unnamedAbove(centres: centres, heights: heights, anchor: 11) == 5)
        // Below the anchor nothing is judged; nothing at all to judge is no doubt.
        #expect(VertebralMorphometry.unnamedAbove(centres: c, heights: h, anchor: 2) == -1)
        #expect(VertebralMorphometry.unnamedAbove(centres: [], heights: [], anchor: 0) == -1)
        #expect(VertebralMorphometry.unnamedAbove(centres: [400], heights: [20], anchor: 0) == -1)
    }
}
