import ArgumentParser
import DXAcquisition
import DXAnalysis
import DXControl
import DXReport
import Foundation

/// `dexa exam`: what the technologist does all day (docs/exam.md).
struct ExamCommands: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "exam", abstract: "Patient exams: new, checklist, run, status, list, show, report (and skip, add, abort).",
        subcommands: [New.self, Checklist.self, Run.self, Status.self, List.self, Show.self, Report.self, Correct.self, Skip.self, Add.self, AbortExam.self])

    struct New: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Register a patient's exam; prints its number.",
            discussion: "From the hospital's worklist (dexa worklist): --worklist ACCESSION takes the patient, the referral and the study from today's item with that accession number; nothing is retyped. Otherwise give the patient and the referral.")
        @OptionGroup var options: ConnectionOptions
        @OptionGroup var dicom: DicomOptions
        @Option(help: "Start from today's worklist item with this accession number.") var worklist: String?
        @Option(name: .customLong("patient-id"), help: "The hospital's patient id.") var patientID: String?
        @Option(help: "The patient's name.") var name: String?
        @Option(help: "female or male") var sex: PatientRecord.Sex?
        @Option(name: .customLong("birth-date"), help: "YYYY-MM-DD") var birthDate: String?
        @Option(help: "Reference population for T- and Z-scores.") var ethnicity: String?
        @Option(help: "Who referred the patient, and why (from the worklist: the referring physician and the requested procedure).") var referral: String?
        @Option(name: .customLong("operator"), help: "The technologist (default: your login).") var operatorName: String?

        func run() async throws {
            let params: ExamCreateParams
            if let worklist {
                guard patientID == nil, name == nil, sex == nil, birthDate == nil else {
                    throw CLIError(message: "--worklist takes the patient from the worklist item: give no --patient-id, --name, --sex or --birth-date", status: .badInput)
                }
                let item = try await WorklistLookup.item(accession: worklist, dicom: dicom)
                params = try WorklistLookup.params(item, ethnicity: ethnicity, referral: referral, operatorName: operatorName)
            } else {
                guard let patientID, let name, let sex, let birthDate, let referral else {
                    throw CLIError(message: "give --patient-id, --name, --sex, --birth-date and --referral, or --worklist ACCESSION", status: .badInput)
                }
                let patient = PatientRecord(id: patientID, name: name, sex: sex, birthDate: birthDate, ethnicity: ethnicity)
                params = ExamCreateParams(patient: patient, referral: referral, operatorName: operatorName)
            }
            let r = try await options.call(.examCreate, params)
            if options.json { Output.json(r); return }
            let accession = r.scheduled.map { ", accession \($0.accessionNumber)" } ?? ""
            print("exam \(r.id) for \(r.patient.name) (\(r.patient.id)\(accession)): answer the checklist next (dexa exam checklist \(r.id) ...)")
            ExamText.printChecklist(r.checklist)
        }
    }

    struct Checklist: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Answer the pre-scan checklist (any subset; each answer is recorded with your name and the time).")
        @OptionGroup var options: ConnectionOptions
        @Argument(help: "The exam number.") var exam: Int64
        @Option(help: "no, yes or unknown") var pregnancy: ChecklistAnswers.Pregnancy?
        @Option(help: "none, or the date (YYYY-MM-DD) of the last contrast agent study") var contrast: ChecklistAnswers.RecentStudy?
        @Option(help: "none, or the date of the last nuclear medicine study") var nuclear: ChecklistAnswers.RecentStudy?
        @Option(help: "A site with a recent fracture (repeatable): ap_spine, left_hip, right_hip, lateral_spine") var fracture: [Site] = []
        @Flag(help: "No recent fracture.") var noFracture = false
        @Option(help: "A site with metal: screws, a prosthesis (repeatable)") var metal: [Site] = []
        @Flag(help: "No metal.") var noMetal = false
        @Flag(help: "Necklaces and navel piercing removed.") var jewelleryRemoved = false
        @Option(help: "Height measured today, cm.") var height: Double?
        @Option(help: "Weight measured today, kg.") var weight: Double?
        @Flag(help: "Height and weight were measured today.") var measuredToday = false
        @Flag(help: "The patient's identity is checked.") var identityConfirmed = false
        @Flag(help: "The referral is checked.") var referralConfirmed = false
        @Option(help: "For the VFA indication: historical height loss, cm.") var heightLossCm: Double?
        @Option(help: "For the VFA indication: a vertebral fracture the patient reports that no record documents (yes or no).")
        var undocumentedVertebralFracture: Bool?
        @Option(help: "For the VFA indication: glucocorticoids, prednisone-equivalent mg a day.") var glucocorticoidMgPerDay: Double?
        @Option(help: "For the VFA indication: glucocorticoids, months taken.") var glucocorticoidMonths: Double?

        func run() async throws {
            var a = ChecklistAnswers()
            a.pregnancy = pregnancy
            a.contrast = contrast
            a.nuclearMedicine = nuclear
            if noFracture || !fracture.isEmpty { a.recentFracture = fracture }
            if noMetal || !metal.isEmpty { a.metal = metal }
            if jewelleryRemoved { a.jewelleryRemoved = true }
            a.heightCm = height
            a.weightKg = weight
            if measuredToday { a.measuredToday = true }
            if identityConfirmed { a.identityConfirmed = true }
            if referralConfirmed { a.referralConfirmed = true }
            a.heightLossCm = heightLossCm
            a.undocumentedVertebralFracture = undocumentedVertebralFracture
            a.glucocorticoidMgPerDay = glucocorticoidMgPerDay
            a.glucocorticoidMonths = glucocorticoidMonths
            let r = try await options.call(.examChecklist, ExamChecklistParams(examID: exam, answers: a))
            if options.json { Output.json(r); return }
            print("exam \(exam): \(r.state.rawValue)")
            ExamText.printChecklist(r.checklist)
        }
    }

    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the exam site by site: progress, ETA, motion and timing warnings as they happen, the quick look after each site.",
            discussion: "With --json, one object per line: {\"type\": \"exam.step\" | \"exam.warning\" | \"step\", \"data\": ...}.")
        @OptionGroup var options: ConnectionOptions
        @Argument(help: "The exam number.") var exam: Int64
        @Flag(help: "Go on to the next site without asking.") var auto = false

        enum Step { case start, next, again(Site?) }

        func run() async throws {
            var current = try await options.call(.examGet, ExamIDParams(examID: exam))
            var step: Step = current.state == .ready ? .start : .next
            let bar = ProgressBar()
            try await options.waitForDevice()
            while true {
                if current.state == .completed || current.state == .aborted { break }
                if case .next = step, current.state != .inProgress {
                    throw CLIError(message: "exam \(exam) is \(current.state.rawValue): complete the checklist first", status: .examState)
                }
                let showBar = !options.json, json = options.json, id = exam, thisStep = step
                let result = try await options.run { connection in
                    let follow = Task {
                        for await n in connection.notifications {
                            if let s = Notice.examStep.decode(n.method, n.params) {
                                if json { Output.tagged(n.method, s); continue }
                                switch s.phase {
                                case "positioning": print("\(s.site.title): positioning")
                                case "scout": print("\(s.site.title): scout (choosing the exposure mode)")
                                case "scanning": print("\(s.site.title): scanning")
                                default: break
                                }
                            } else if let p = Notice.scanProgress.decode(n.method, n.params) {
                                if showBar { bar.draw(done: p.lines, total: Int(p.plannedLines), rate: p.linesPerSecond, eta: p.etaSeconds) }
                            } else if let w = Notice.examWarning.decode(n.method, n.params) {
                                if json { Output.tagged(n.method, w) } else { print("\n  ! \(w.kind.rawValue): \(w.message)") }
                            }
                        }
                    }
                    defer { follow.cancel() }
                    switch thisStep {
                    case .start: return try await connection.call(.examStart, ExamIDParams(examID: id))
                    case .next: return try await connection.call(.examNext, ExamIDParams(examID: id))
                    case .again(let site): return try await connection.call(.examRepeat, ExamRepeatParams(examID: id, site: site))
                    }
                }
                if !options.json { bar.finish() }
                current = result.exam
                if options.json { Output.tagged("step", result) } else { ExamText.printAttempt(result.attempt); print(result.message) }
                guard current.state == .inProgress else { break }
                if auto && result.attempt.status != .completed {
                    // A step that ended early (a fault, the watchdog, a lost link, a full disk) is
                    // never scanned again without a person deciding: that would expose the
                    // patient again on the strength of a flag.
                    throw CLIError(message: "the \(result.attempt.site.title) did not complete (\(result.attempt.status.rawValue)\(result.attempt.reason.map { ": " + $0 } ?? "")); "
                                   + "`dexa exam run \(exam)` scans it again, `dexa exam skip` skips it", status: .scanFailed)
                }
                step = .next
                if !auto {
                    print("Enter: next site · r: repeat this site · s: skip the next site · a: abort the exam > ", terminator: "")
                    switch readLine()?.trimmingCharacters(in: .whitespaces).lowercased() {
                    case "r": step = .again(nil)
                    case "s":
                        guard let site = current.nextSite else { continue }
                        print("reason for skipping > ", terminator: "")
                        let reason = readLine() ?? "skipped at the console"
                        current = try await options.call(.examSkip, ExamSkipParams(examID: exam, site: site, reason: reason))
                        continue
                    case "a":
                        // Between sites: no scan runs while the technologist says why.
                        let cause = Self.askCause()
                        print("in words (Enter: none) > ", terminator: "")
                        let words = readLine()?.trimmingCharacters(in: .whitespaces) ?? ""
                        current = try await options.call(.examAbort, ExamAbortParams(examID: exam, reason: words.isEmpty ? "aborted at the console" : words,
                                                                                     cause: cause))
                        print("exam \(exam) aborted; X-rays off")
                        continue
                    case nil: return
                    default: break
                    }
                }
            }
            if !options.json { ExamText.printSummary(current) }
        }

        /// The cause, asked until the answer is one (Enter or end of input: none chosen, the
        /// RIS's code is then read from the words).
        static func askCause() -> AbortCause? {
            let causes = AbortCause.allCases
            while true {
                print("why? " + causes.enumerated().map { "\($0.offset + 1): \($0.element.rawValue)" }.joined(separator: " · ") + " (Enter: none) > ",
                      terminator: "")
                guard let line = readLine(), !line.trimmingCharacters(in: .whitespaces).isEmpty else { return nil }
                if let cause = AbortCause(answer: line) { return cause }
                print("\"\(line)\" is not one of them: a number from 1 to \(causes.count) or a name")
            }
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Where an exam stands: state, sites, next site.")
        @OptionGroup var options: ConnectionOptions
        @Argument(help: "The exam number.") var exam: Int64

        func run() async throws {
            let r = try await options.call(.examGet, ExamIDParams(examID: exam))
            if options.json { Output.json(r); return }
            ExamText.printSummary(r)
            if r.state == .inProgress, let next = r.nextSite { print("next: \(next.title) (dexa exam run \(exam))") }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Recent exams, newest first.")
        @OptionGroup var options: ConnectionOptions
        @Option(help: "How many.") var limit: Int = 20

        func run() async throws {
            let r = try await options.call(.examList, ExamListParams(limit: limit))
            if options.json { Output.json(r); return }
            for e in r.exams {
                let done = e.attempts.filter { $0.status == .completed }.count
                print("\(e.id)  \(e.state.rawValue)  \(e.patient.id)  \(e.patient.name)  \(done) scans  \(e.createdAt)")
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One exam in full: checklist, every attempt with its capture, quick look and warnings.")
        @OptionGroup var options: ConnectionOptions
        @Argument(help: "The exam number.") var exam: Int64

        func run() async throws {
            let r = try await options.call(.examGet, ExamIDParams(examID: exam))
            if options.json { Output.json(r); return }
            ExamText.printSummary(r)
            ExamText.printChecklist(r.checklist)
            for a in r.attempts { ExamText.printAttempt(a) }
            for w in r.warnings { print("  ! \(w.message)") }
        }
    }

    struct Report: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The exam's clinical results: each site's regions with BMD, T- and Z-scores, exclusions, findings, the diagnosis and the dose.")
        @OptionGroup var options: ConnectionOptions
        @Argument(help: "The exam number.") var exam: Int64
        @Option(help: "Also write the report (A4 pages) as PDF to this file.") var pdf: String?
        @Option(help: "Also write the report as PNG (150 dpi) to this file; a second page goes beside it as FILE-2.png.") var png: String?

        func run() async throws {
            let r = try await options.call(.examResults, ExamIDParams(examID: exam))
            var pngFiles: [String] = []
            if pdf != nil || png != nil {
                // The images come from the sites' decomposed scans, beside their captures in
                // the daemon's state directory (readable by the dexa group).
                let scans = ReportWriter.scans(for: r)
                let missing = r.sites.filter { $0.result != nil && scans[$0.site] == nil }.map(\.title)
                if !missing.isEmpty {
                    FileHandle.standardError.write(Data("dexa exam report: no image for \(missing.joined(separator: ", ")) (its decomposed scan cannot be read here)\n".utf8))
                }
                do {
                    if let pdf { try ReportWriter.pdf(r, scans: scans, to: pdf) }
                    if let png { pngFiles = try ReportWriter.png(r, scans: scans, to: png) }
                } catch {
                    FileHandle.standardError.write(Data("dexa exam report: \(error.description)\n".utf8))
                    throw ExitCode(ExitStatus.failure.rawValue)
                }
            }
            if options.json { Output.json(r); return }
            ResultsText.printResults(r)
            if let pdf { print("report: \(pdf)") }
            for file in pngFiles { print("report image: \(file)") }
        }
    }

    struct Correct: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Correct a site's ROIs (disc lines, vertebra labels, the neck box), with a reason; the site is analysed again and the change recorded.",
            discussion: """
            AP spine: --move-disc L2/L3=+2.5 moves the disc line between L2 and L3 2.5 mm towards the feet (- towards the head); \
            --disc-lines gives every disc line's y on the table (mm, top to bottom); --relabel L3=L4 renames the vertebra now \
            called L3 as L4, and every other with it; --l4-at Y names the vertebra at y Y mm L4 (where the analysis could not \
            name them). Hips: --neck-box 2 moves the neck box 2 mm along the neck towards the trochanter, --neck-box -2 towards \
            the head. Lateral spine: --move-point T12.upper-anterior=0,+1.5 moves one of a vertebra's six points (upper- or \
            lower-, then posterior, middle or anterior) by x,y mm, --vertebra-points T12=x,y,... places all six (twelve numbers: \
            the upper endplate's posterior, middle, anterior, then the lower's), --grade T12=2:wedge sets the reader's grade and \
            type (--grade T12=0 for none), --restore T12 gives the vertebra back to the analysis. \
            --reset goes back to the automatic ROIs. Each correction starts from the ROIs as they are now, is made on \
            the attempt whose result is shown (refused if the site was rescanned meanwhile), and is kept on the exam's record \
            with who made it, when, why, and the numbers before and after.
            """)
        @OptionGroup var options: ConnectionOptions
        @Argument(help: "The exam number.") var exam: Int64
        @Argument(help: "ap_spine, left_hip, right_hip, lateral_spine") var site: Site
        @Option(help: "Why (on the record and the report).") var reason: String
        @Option(name: .customLong("move-disc"), help: "A/B=MM: move the disc line between vertebrae A and B by MM (+ towards the feet).")
        var moveDisc: [String] = []
        @Option(help: "Every disc line's y (mm), top to bottom, comma-separated.") var discLines: String?
        @Option(help: "FROM=TO: the vertebra now called FROM is TO.") var relabel: String?
        @Option(name: .customLong("l4-at"), help: "Y: the vertebra whose body contains y Y mm is L4.") var l4At: Double?
        @Option(parsing: .unconditional, help: "Move the neck box this many mm along the neck (+ towards the trochanter, - towards the head).")
        var neckBox: Double?
        @Option(name: .customLong("move-point"), parsing: .unconditionalSingleValue,
                help: "V.POINT=DX,DY: move one of vertebra V's points (upper-/lower- posterior, middle, anterior) by DX,DY mm.")
        var movePoint: [String] = []
        @Option(name: .customLong("vertebra-points"), help: "V=X,Y,...: vertebra V's six points, twelve numbers in mm.") var vertebraPoints: String?
        @Option(help: "V=G[:TYPE]: the reader's grade of vertebra V (0-3) and type (wedge, biconcave, crush).") var grade: String?
        @Option(help: "V: vertebra V back to the analysis's points and grade.") var restore: String?
        @Flag(help: "Back to the automatic ROIs.") var reset = false

        static let pointNames = ["upper-posterior", "upper-middle", "upper-anterior", "lower-posterior", "lower-middle", "lower-anterior"]

        /// "T12.upper-anterior=0,+1.5" → (T12, 2, 0, 1.5).
        static func parsePointMove(_ text: String) -> (vertebra: String, index: Int, dx: Double, dy: Double)? {
            let parts = text.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { return nil }
            let target = parts[0].split(separator: ".", maxSplits: 1).map(String.init)
            let d = parts[1].split(separator: ",").compactMap { Double($0.trimmingCharacters(in: .whitespaces)) }
            guard target.count == 2, let k = pointNames.firstIndex(of: target[1]), d.count == 2, d.allSatisfy(\.isFinite) else { return nil }
            return (target[0], k, d[0], d[1])
        }

        /// "T12=x,y,..." (twelve numbers) → the vertebra's six points.
        static func parsePoints(_ text: String) -> CorrectionRequest.VertebraPoints? {
            let parts = text.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, let values = parseLines(parts[1]), values.count == 12 else { return nil }
            return CorrectionRequest.VertebraPoints(vertebra: parts[0], points: (0..<6).map { [values[2 * $0], values[2 * $0 + 1]] })
        }

        /// "T12=2:wedge" or "T12=0".
        static func parseGrade(_ text: String) -> CorrectionRequest.VertebraGrade? {
            let parts = text.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { return nil }
            let g = parts[1].split(separator: ":", maxSplits: 1).map(String.init)
            guard let grade = Int(g[0]) else { return nil }
            var type: VertebralBody.Kind?
            if g.count == 2 {
                guard let t = VertebralBody.Kind(rawValue: g[1]) else { return nil }
                type = t
            }
            return CorrectionRequest.VertebraGrade(vertebra: parts[0], grade: grade, type: type)
        }

        func validate() throws {
            for m in movePoint where Self.parsePointMove(m) == nil {
                throw ValidationError("--move-point V.POINT=DX,DY, POINT one of \(Self.pointNames.joined(separator: ", ")); for example T12.upper-anterior=0,+1.5, not \(m)")
            }
            if let p = vertebraPoints, Self.parsePoints(p) == nil { throw ValidationError("--vertebra-points V=X,Y,... with twelve numbers in mm, not \(p)") }
            if vertebraPoints != nil && !movePoint.isEmpty { throw ValidationError("--vertebra-points and --move-point cannot be combined") }
            if Set(movePoint.compactMap { Self.parsePointMove($0)?.vertebra }).count > 1 { throw ValidationError("--move-point moves one vertebra's points at a time") }
            if let g = grade, Self.parseGrade(g) == nil { throw ValidationError("--grade V=G[:TYPE], for example T12=2:wedge or T12=0, not \(g)") }
            if reset && (vertebraPoints != nil || !movePoint.isEmpty || grade != nil || restore != nil) {
                throw ValidationError("--reset goes back to the automatic ROIs: it takes no other change")
            }
            if discLines != nil && !moveDisc.isEmpty { throw ValidationError("--disc-lines and --move-disc cannot be combined") }
            if relabel != nil && l4At != nil { throw ValidationError("--relabel and --l4-at both name the vertebrae: give one") }
            if reset && (discLines != nil || !moveDisc.isEmpty || relabel != nil || l4At != nil || neckBox != nil) {
                throw ValidationError("--reset goes back to the automatic ROIs: it takes no other change")
            }
            if let r = relabel, r.split(separator: "=").count != 2 { throw ValidationError("--relabel FROM=TO, for example L3=L4, not \(r)") }
            for m in moveDisc where Self.parseMove(m) == nil { throw ValidationError("--move-disc A/B=MM, for example L2/L3=+2.5, not \(m)") }
            if let d = discLines, Self.parseLines(d) == nil { throw ValidationError("--disc-lines: numbers in mm separated by commas, not \(d)") }
        }

        static func parseMove(_ text: String) -> (above: String, below: String, mm: Double)? {
            let parts = text.split(separator: "=")
            guard parts.count == 2, let mm = Double(parts[1]), mm.isFinite else { return nil }
            let names = parts[0].split(separator: "/").map(String.init)
            guard names.count == 2, let a = CorrectionRequest.levelIndex(names[0]), let b = CorrectionRequest.levelIndex(names[1]), b == a + 1 else {
                return nil
            }
            return (names[0], names[1], mm)
        }

        static func parseLines(_ text: String) -> [Double]? {
            let values = text.split(separator: ",").map { Double($0.trimmingCharacters(in: .whitespaces)) }
            guard !values.isEmpty, values.allSatisfy({ $0?.isFinite == true }) else { return nil }
            return values.compactMap { $0 }
        }

        /// The disc lines with the moves applied: line k is vertebra k's upper, the last one the
        /// last vertebra's lower; the line between A and B is A's lower (or B's upper).
        static func moved(_ spine: SpineMeasurement, _ moves: [(above: String, below: String, mm: Double)]) throws -> [Double] {
            guard let last = spine.vertebrae.last else { return [] }
            var lines = spine.vertebrae.map(\.upper.yMM) + [last.lower.yMM]
            for move in moves {
                let k = spine.vertebrae.firstIndex { $0.name == move.above }.map { $0 + 1 } ?? spine.vertebrae.firstIndex { $0.name == move.below }
                guard let k else {
                    throw CLIError(message: "no disc line between \(move.above) and \(move.below) in the analysis (vertebrae: \(spine.vertebrae.map(\.name).joined(separator: ", ")))",
                                   status: .badInput)
                }
                lines[k] += move.mm
            }
            return lines
        }

        func run() async throws {
            // The result shown now: the attempt the correction is for, and its disc lines.
            let results = try await options.call(.examResults, ExamIDParams(examID: exam))
            let shown = results.sites.first { $0.site == site.rawValue }
            var lines = discLines.flatMap(Self.parseLines)
            if !moveDisc.isEmpty {
                guard let spine = shown?.result?.spine else {
                    throw CLIError(message: "the \(site.title) has no disc lines to move (no spine analysis); give them all with --disc-lines",
                                   status: .badInput)
                }
                lines = try Self.moved(spine, moveDisc.compactMap(Self.parseMove))
            }
            let relabelling = relabel.map { r -> CorrectionRequest.Relabel in
                let p = r.split(separator: "=").map(String.init)
                return CorrectionRequest.Relabel(from: p[0], to: p[1])
            }
            var points = vertebraPoints.flatMap(Self.parsePoints)
            let moves = movePoint.compactMap(Self.parsePointMove)
            if let name = moves.first?.vertebra {
                guard let body = shown?.result?.vfa?.vertebra(name), body.points.count == 6 else {
                    throw CLIError(message: "\(name) has no points to move on the \(site.title) (not read, or not a lateral spine): place all six with --vertebra-points",
                                   status: .badInput)
                }
                var p = body.points
                for m in moves { p[m.index][0] += m.dx; p[m.index][1] += m.dy }
                points = CorrectionRequest.VertebraPoints(vertebra: name, points: p)
            }
            let r = try await options.call(.examCorrect, ExamCorrectParams(examID: exam, site: site, reason: reason, discLinesMM: lines,
                                                                           relabel: relabelling, l4YMM: l4At, neckBoxShiftMM: neckBox,
                                                                           vertebraPoints: points, vertebraGrade: grade.flatMap(Self.parseGrade),
                                                                           vertebraRestore: restore, reset: reset ? true : nil, attempt: shown?.attempt))
            if options.json { Output.json(r); return }
            ResultsText.printCorrection(r.correction)
            ResultsText.printSite(r.result)
        }
    }

    struct Skip: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Skip a site, with a reason.")
        @OptionGroup var options: ConnectionOptions
        @Argument(help: "The exam number.") var exam: Int64
        @Argument(help: "ap_spine, left_hip, right_hip, lateral_spine") var site: Site
        @Option(help: "Why.") var reason: String

        func run() async throws {
            let r = try await options.call(.examSkip, ExamSkipParams(examID: exam, site: site, reason: reason))
            if options.json { Output.json(r) } else { ExamText.printSummary(r) }
        }
    }

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a site to the exam's plan.")
        @OptionGroup var options: ConnectionOptions
        @Argument(help: "The exam number.") var exam: Int64
        @Argument(help: "ap_spine, left_hip, right_hip, lateral_spine") var site: Site

        func run() async throws {
            let r = try await options.call(.examAdd, ExamAddParams(examID: exam, site: site))
            if options.json { Output.json(r) } else { ExamText.printSummary(r) }
        }
    }

    struct AbortExam: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "abort", abstract: "Abort the exam: a running scan stops at once, X-rays off.")
        @OptionGroup var options: ConnectionOptions
        @Argument(help: "The exam number.") var exam: Int64
        @Option(help: "Why, in words (the exam's record, the RIS's comments).") var reason: String = "aborted at the console"
        @Option(help: "Why, as the RIS hears it: \(AbortCause.allCases.map(\.rawValue).joined(separator: ", ")). Without it the RIS's code is read from the reason's words.")
        var cause: AbortCause?

        func run() async throws {
            let r = try await options.call(.examAbort, ExamAbortParams(examID: exam, reason: reason, cause: cause))
            if options.json { Output.json(r) } else { print("exam \(exam) aborted") }
        }
    }
}

extension Site: ExpressibleByArgument {}
extension AbortCause: ExpressibleByArgument {}
extension PatientRecord.Sex: ExpressibleByArgument {}
extension ChecklistAnswers.Pregnancy: ExpressibleByArgument {}
extension ChecklistAnswers.RecentStudy: ExpressibleByArgument {
    public init?(argument: String) {
        if argument == "none" { self = .noStudy; return }
        guard let day = CalendarDay(argument) else { return nil }
        self = .on(day)
    }
}

/// How exams read on a terminal.
enum ExamText {
    static func printChecklist(_ c: ChecklistStatus) {
        print("checklist: \(c.complete ? "complete" : "not complete")" + (c.bmi.map { String(format: ", BMI %.1f", $0) } ?? ""))
        if !c.missing.isEmpty { print("  missing: " + c.missing.joined(separator: ", ")) }
        for b in c.blocks { print("  BLOCKED: \(b.reason)") }
        print("  plan: " + c.plan.map(\.title).joined(separator: ", "))
        for f in c.findings { print("  finding: \(f)") }
    }

    static func printAttempt(_ a: SiteAttempt) {
        var line = "\(a.site.title) #\(a.attempt): \(a.status.rawValue)"
        if a.plannedLines > 0 { line += ", \(a.lines) of \(a.plannedLines) lines" }
        if let q = a.quickLook {
            if let bmd = q.meanBoneBMD {
                line += String(format: "; bone %.1f cm², mean %.3f g/cm²", q.boneAreaCm2, bmd)
            } else if let note = q.note {
                line += "; \(note)"
            }
        }
        print(line)
        if let reason = a.reason, a.status != .completed { print("  \(reason)") }
        if let x = a.exposure {
            print(String(format: "  %@ mode, %.2f mA: %@", x.mode.rawValue, Double(x.tubeCurrentUA) / 1000, x.reason))
        }
        if let d = a.dose {
            print(String(format: "  dose: %d scans, %.1f s of exposure, DAP %.2f mGy·cm²%@", d.scans, Double(d.exposureMs) / 1000, d.dapMGyCm2,
                         d.estimated ? " (estimated)" : ""))
        }
        if let c = a.capture { print("  capture \(c)") }
        for w in a.warnings { print("  ! \(w.message)") }
    }

    static func printSummary(_ e: ExamRecord) {
        print("exam \(e.id) \(e.state.rawValue): \(e.patient.name) (\(e.patient.id))")
        for site in e.plan {
            print("  \(site.title): \(e.latest(site)?.status.rawValue ?? "to do")")
        }
    }
}
