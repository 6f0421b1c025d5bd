import DXAcquisition
import DXAnalysis
import DXClinical
import DXDecomposition
import CCairo
import DXProtocol
@testable import DXReport
import DXSimulator
import DXTestSupport
import Foundation
import Testing

/// The report page from a real analysis: written as PDF and PNG, read back by tools we did not
/// write (pdftotext, the PNG's header), and kept in docs/examples when asked
/// (DEXA_REPORT_EXAMPLE=DIR).
@Suite("Report page")
struct ReportTests {
    static func results() throws -> (ExamResults, [String: DecomposedScan]) { try ExampleExam.results() }

    /// The PDF's text as poppler's pdftotext reads it, and its exit status.
    static func pdfText(_ pdf: String) throws -> (String, Int32) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/pdftotext")
        p.arguments = [pdf, "-"]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return (text, p.terminationStatus)
    }

    @Test func thePageIsWrittenAndReadsBack() throws {
        let (r, scans) = try Self.results()
        let tmp = TemporaryDirectory()
        let dir = ProcessInfo.processInfo.environment["DEXA_REPORT_EXAMPLE"] ?? tmp.path
        let pdf = dir + "/report.pdf", png = dir + "/report.png"
        try ReportWriter.pdf(r, scans: scans, to: pdf)
        try ReportWriter.png(r, scans: scans, to: png)
        // The PNG: signature, and 150 dpi of A4 (1240 × 1754).
        let bytes = try #require(FileManager.default.contents(atPath: png))
        #expect(Array(bytes.prefix(8)) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        let width = bytes[16..<20].reduce(0) { $0 << 8 | Int($1) }, height = bytes[20..<24].reduce(0) { $0 << 8 | Int($1) }
        #expect(width == 1240 && height == 1754)
        // The PDF, read by poppler's pdftotext: the table, the exclusion and the diagnosis are text.
        let (text, status) = try Self.pdfText(pdf)
        #expect(status == 0)
        for expected in ["Ada Example", "L1-L4", "L4 *", "osteophyte", "Diagnosis", "mGy·cm²", "left hip", "neck", "total_hip", "wards",
                         "not for diagnosis", "right hip", "metal in the right hip", "Change since exam 3", "yes, a loss", "not judged",
                         "lateral spine (VFA)", "T12 grade 2 wedge", "L1 grade 2 crush", "a physician confirms",
                         "Vertebral fracture assessment indicated", "height loss 4.5 cm"] {
            #expect(text.contains(expected), "\(expected) not in the PDF's text")
        }
    }

    /// A lateral body with its posterior height uncertain, graded from its anterior and middle
    /// heights: the table prints its grade as the least it can be ("≥2"), its posterior height
    /// as unmeasured, and why, and the summary says "at least".
    @Test func aBodyGradedWithoutACornerSaysSo() throws {
        var (r, scans) = try Self.results()
        let k = try #require(r.sites.firstIndex { $0.site == "lateral_spine" })
        var vfa = try #require(r.sites[k].result?.vfa)
        let i = try #require(vfa.vertebrae.firstIndex { $0.name.hasPrefix("T") && $0.readable && $0.grade == 0 })
        let name = vfa.vertebrae[i].name
        var t8 = vfa.vertebrae[i]
        t8.posteriorMM = nil
        t8.middleMM = (t8.anteriorMM ?? 20) * 0.7
        t8.uncertainHeight = "posterior"
        t8.reason = "its posterior height (± 0.9 mm) is uncertain: the endplates there are unclear"
        vfa.vertebrae[i] = t8
        vfa.vertebrae = VertebralMorphometry.grade(vfa.vertebrae)
        #expect(vfa.vertebrae[i].grade == 2 && vfa.vertebrae[i].uncertainHeight == "posterior")
        r.sites[k].result?.vfa = vfa
        let tmp = TemporaryDirectory()
        let dir = ProcessInfo.processInfo.environment["DEXA_REPORT_EXAMPLE"] ?? tmp.path
        try ReportWriter.png(r, scans: scans, to: dir + "/report-vfa-corner.png")
        try ReportWriter.pdf(r, scans: scans, to: tmp.path + "/corner.pdf")
        let (text, status) = try Self.pdfText(tmp.path + "/corner.pdf")
        #expect(status == 0)
        for expected in ["≥2", "\(name) grade at least 2 (30 %)", "graded from its anterior and middle heights", "type not told"] {
            #expect(text.contains(expected), "\(expected) not in the PDF's text")
        }
    }

    /// A woman of 41 with a Z-score reference installed (SYNTHETIC numbers, the arithmetic
    /// only): the diagnosis reads on the lowest Z-score, not the WHO classes, and the page says so.
    @Test func underFiftyTheReportReadsOnZ() throws {
        let (r, scans) = try Self.results()
        let patient = PatientContext(sex: .female, ageYears: 41)
        let spine = try #require(scans["ap_spine"]), hip = try #require(scans["left_hip"])
        let table = AgeMatchedReference(
            name: "SYNTHETIC (tests only)", version: "0", population: "none", scale: "none", source: Citation(text: "invented for the test"),
            status: .secondary,
            tables: [.init(site: .lumbarSpine, sex: .female, bands: [.init(ageFrom: 40, ageTo: 50, meanGCm2: 1.10, sdGCm2: 0.11)]),
                     .init(site: .femoralNeck, sex: .female, bands: [.init(ageFrom: 40, ageTo: 50, meanGCm2: 0.85, sdGCm2: 0.11)]),
                     .init(site: .totalHip, sex: .female, bands: [.init(ageFrom: 40, ageTo: 50, meanGCm2: 0.95, sdGCm2: 0.12)])])
        let reference = ReferenceSet.nhanes.with(ageMatched: table)
        var young = r
        young.followUp = nil
        young.patient.birthDate = "1985-08-01"
        young.patient.ageYears = 41
        young.sites[0].result = try SiteAnalysis.analyze(spine, patient: patient, reference: reference).get()
        young.sites[1].result = try SiteAnalysis.analyze(hip, patient: patient, reference: reference).get()
        young.diagnosis = ExamResults.diagnose(young.sites, patient: patient, reference: reference)
        let zs = young.sites.compactMap(\.result).flatMap(\.rois).filter { !$0.excluded && $0.forDiagnosis && ReferenceSite(rawValue: $0.name) != nil }
            .compactMap(\.zScore)
        print("under 50: \(young.diagnosis.words), Z \(young.diagnosis.zScore ?? .nan) at \(young.diagnosis.roi ?? "-"); Z-scores \(zs)")
        #expect(young.diagnosis.zScore == zs.min() && young.diagnosis.whoClass == nil && young.diagnosis.tScore == nil)
        #expect(young.diagnosis.words == ((zs.min() ?? 0) <= -2.0 ? "below the expected range for age" : "within the expected range for age"))
        // Without the reference: no reading, and why.
        let none = ExamResults.diagnose(r.sites, patient: patient)
        #expect(none.zScore == nil && none.words.contains("no age- and sex-matched reference is installed"))
        let tmp = TemporaryDirectory()
        let dir = ProcessInfo.processInfo.environment["DEXA_REPORT_EXAMPLE"] ?? tmp.path
        try ReportWriter.png(young, scans: scans, to: dir + "/report-under-50.png")
        try ReportWriter.pdf(young, scans: scans, to: tmp.path + "/under-50.pdf")
        let (text, _) = try Self.pdfText(tmp.path + "/under-50.pdf")
        #expect(text.contains("lowest Z-score") && text.contains("the WHO classes do not apply") && !text.contains("Z-scores need"), "\(text)")
    }

    /// A full exam (spine, both hips, a follow-up): more than a page holds. The parts go whole
    /// to a second page that names the patient and the exam; nothing is drawn into the footer;
    /// the PNG is two files.
    @Test func aFullExamTakesTwoPages() throws {
        var (r, scans) = try Self.results()
        var scanner = TableScanner(seed: 12)
        var spec = PatientVariety.patient(seed: 10, lateralAnatomy: .bodiesAndRibs)
        spec.spine.vertebrae[5].osteophyte = .left
        let config = ScanConfiguration(scanID: 3, mode: .dual, xUm: 100_000, yStartUm: 860_000, lineCount: 150, lineStepUm: 1000,
                                       linePeriodUs: 1_200_000, tubeCurrentUA: 333, linesPerFrame: 1)
        let right = try scanner.decompose(PatientScene(spec), config, region: "right_hip")
        let patient = PatientContext(sex: .female, ageYears: 67.4)
        r.sites[2] = ExamResults.Site(site: "right_hip", title: "right hip", attempt: 1, status: "completed", capture: nil,
                                      result: try SiteAnalysis.analyze(right, patient: patient).get(), note: nil,
                                      dose: ScanDose(scans: 5, exposureMs: 181_940, dapMGyCm2: 2.24))
        r.diagnosis = ExamResults.diagnose(r.sites, patient: patient)
        r.dose = ScanDose(scans: 15, exposureMs: 585_580, dapMGyCm2: 10.89)
        scans["right_hip"] = right
        let pages = ReportPage.pages(r, scans: scans)
        #expect(pages.count == 2)
        let tmp = TemporaryDirectory()
        let dir = ProcessInfo.processInfo.environment["DEXA_REPORT_EXAMPLE"] ?? tmp.path
        let files = try ReportWriter.png(r, scans: scans, to: dir + "/report-full.png")
        #expect(files == [dir + "/report-full.png", dir + "/report-full-2.png"])
        #expect(files.allSatisfy { FileManager.default.fileExists(atPath: $0) })
        let pdf = tmp.path + "/full.pdf"
        try ReportWriter.pdf(r, scans: scans, to: pdf)
        let (text, status) = try Self.pdfText(pdf)
        #expect(status == 0)
        // pdftotext separates pages with a form feed.
        let pageTexts = text.split(separator: "\u{0C}", omittingEmptySubsequences: true).map(String.init).filter { !$0.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty }
        #expect(pageTexts.count == 2)
        if pageTexts.count == 2 {
            #expect(pageTexts[0].contains("Page 1 of 2") && pageTexts[1].contains("Page 2 of 2"))
            #expect(pageTexts[1].contains("Ada Example") && pageTexts[1].contains("ID P-0042") && pageTexts[1].contains("exam 7"))
            #expect(pageTexts[1].contains("Dose (dose-area product)"))
        }
        // Every block on each page ends above the footer.
        let surface = try #require(cairo_recording_surface_create(CAIRO_CONTENT_COLOR, nil))
        defer { cairo_surface_destroy(surface) }
        let cr = try #require(cairo_create(surface))
        defer { cairo_destroy(cr) }
        for (k, page) in pages.enumerated() {
            var y = k == 0 ? ReportPage.firstPageTop : ReportPage.nextPageTop
            for block in page { y = block(Canvas(cr: cr), y) }
            #expect(y <= ReportPage.contentBottom, "page \(k + 1) reaches \(y)")
        }
        // A page's file name: the number before the extension.
        #expect(ReportWriter.pagePath("/a/b/report.png", page: 2) == "/a/b/report-2.png")
        #expect(ReportWriter.pagePath("/a/b/report", page: 3) == "/a/b/report-3")
    }

    /// A site whose decomposed scan cannot be read keeps its table; only the image is missing.
    @Test func withoutItsImageASiteKeepsItsTable() throws {
        let (r, _) = try Self.results()
        let tmp = TemporaryDirectory()
        let pdf = tmp.path + "/no-image.pdf"
        try ReportWriter.pdf(r, scans: [:], to: pdf)
        let (text, _) = try Self.pdfText(pdf)
        #expect(text.contains("image not readable here") && text.contains("L1-L4") && text.contains("osteophyte"))
    }

    @Test func anUnwritablePathIsAClearError() throws {
        let (r, scans) = try Self.results()
        #expect(throws: ReportWriter.Failure.self) { try ReportWriter.png(r, scans: scans, to: "/nonexistent/dir/report.png") }
        #expect(throws: ReportWriter.Failure.self) { try ReportWriter.pdf(r, scans: scans, to: "/nonexistent/dir/report.pdf") }
    }
}

/// The lateral spine's reading image (`ReadingImage`): sharper edges, its own window, flagged
/// pixels kept apart, nothing measured from it.
@Suite("Reading image")
struct ReadingImageTests {
    /// A 60 × 60 image of 1 mm pixels: soft tissue 0 with a body of 0.6 g/cm² from column 20 to
    /// 39, one unmeasured pixel, a little noise.
    static func map(body: Float = 0.6) -> BoneMap {
        var scan = DecomposedScan(geometry: .init(channels: 60, lines: 60, pitchMM: 1, lineStepMM: 1, carriageXMM: 0, firstLineYMM: 0),
                                  provenance: .init(capture: nil, scanID: 1, calibration: "test"))
        var rng = SplitMix64(seed: 3)
        for r in 0..<60 {
            for c in 0..<60 {
                let i = scan.index(row: r, column: c)
                scan.bone[i] = ((20..<40).contains(c) ? body : 0) + Float(0.005 * rng.gaussian())
            }
            scan.rowPresent[r] = true
        }
        scan.bone[scan.index(row: 30, column: 5)] = .nan
        return BoneMap(scan)
    }

    @Test func edgesAreBoostedAndTheWindowIsTheImagesOwn() {
        let m = Self.map()
        let rgb = ReadingImage.raster(m)
        func grey(_ r: Int, _ c: Int) -> Int { Int(rgb[3 * (r * 60 + c) + 1]) }
        // Just inside the body's edge brighter than its middle, just outside darker than the
        // soft tissue far away: the edge's contrast grows (unsharp masking's overshoot).
        let inside = (20...22).map { grey(30, $0) }.max() ?? 0, outside = (17...19).map { grey(30, $0) }.min() ?? 0
        #expect(inside > grey(30, 30) + 20 && outside + 20 < grey(30, 2), "\(inside) \(grey(30, 30)) \(outside) \(grey(30, 2))")
        // The window is the image's own: a body of 0.3 g/cm² fills the same grey range as one of
        // 0.9, where the AP raster's fixed 0–2 g/cm² gives it a third as much.
        let faint = ReadingImage.raster(Self.map(body: 0.3)), dense = ReadingImage.raster(Self.map(body: 0.9))
        #expect(abs(Int(faint[3 * (30 * 60 + 30)]) - Int(dense[3 * (30 * 60 + 30)])) <= 10)  // the AP raster: 77 apart
        #expect(rgb.max() == 255 && rgb.enumerated().filter { $0.offset % 3 == 1 }.map(\.element).min() == 0)
        // The unmeasured pixel stays dark red; a uniform image, or one with no number at all, draws.
        #expect(Array(rgb[(3 * (30 * 60 + 5))..<(3 * (30 * 60 + 5) + 3)]) == [100, 0, 0])
        var flat = DecomposedScan(geometry: .init(channels: 8, lines: 8, pitchMM: 1, lineStepMM: 1, carriageXMM: 0, firstLineYMM: 0),
                                  provenance: .init(capture: nil, scanID: 1, calibration: "test"))
        #expect(ReadingImage.raster(BoneMap(flat)).count == 8 * 8 * 3)
        flat.bone = [Float](repeating: 0.5, count: 64)
        #expect(Set(ReadingImage.raster(BoneMap(flat))).count <= 2)
    }
}
