import DXAcquisition
import DXControl
import Foundation
import Testing

/// Parameters are decoded strictly: a key a method does not know is refused with its path,
/// at any depth; types, ranges and missing fields are named.
@Suite struct StrictDecoderTests {
    func json(_ text: String) throws -> JSONValue { try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)) }

    func failure<T: Decodable>(_ type: T.Type, _ text: String) throws -> StrictDecoder.Failure? {
        let value = try json(text)
        do { _ = try StrictDecoder.decode(T.self, from: value); return nil } catch { return error }
    }

    @Test func aMisspeltScanParameterIsRefusedNotDefaulted() throws {
        let e = try #require(try failure(ScanRunParams.self, #"{"lines": 20, "tube_curent_ua": 200}"#))
        guard case .unknownKey(let path, let known) = e else { Issue.record("\(e)"); return }
        #expect(path == "tube_curent_ua")
        #expect(known.contains("tube_current_ua"), "\(known)")
        #expect(e.description.contains("unknown parameter 'tube_curent_ua'"), "\(e)")
        let ok = try StrictDecoder.decode(ScanRunParams.self, from: try json(#"{"lines": 20, "tube_current_ua": 200}"#))
        #expect(ok.lines == 20 && ok.tubeCurrentUA == 200)
    }

    @Test func unknownKeysAreFoundAtAnyDepth() throws {
        let answers = #"{"exam_id": 3, "answers": {"pregnacy": "no"}}"#
        #expect(try failure(ExamChecklistParams.self, answers)?.description.contains("'answers.pregnacy'") == true)
        let patient = #"{"patient": {"id": "P1", "name": "A", "sex": "female", "birth_date": "1950-01-01", "nickname": "x"}, "referral": "r"}"#
        #expect(try failure(ExamCreateParams.self, patient)?.description.contains("'patient.nickname'") == true)
        let sites = #"{"exam_id": 3, "answers": {"metal": ["left_hip"], "recent_fracture": []}}"#
        #expect(try failure(ExamChecklistParams.self, sites) == nil)
    }

    @Test func aMethodWithoutParametersTakesNone() throws {
        #expect(try failure(NoParams.self, "{}") == nil)
        #expect(try failure(NoParams.self, #"{"verbose": true}"#)?.description.contains("'verbose'") == true)
        #expect(try failure(NoParams.self, "[1]") != nil)
    }

    @Test func typesRangesAndMissingFieldsAreNamed() throws {
        #expect(try failure(ExamIDParams.self, #"{"exam_id": "7"}"#)?.description.contains("'exam_id'") == true)
        #expect(try failure(ExamIDParams.self, #"{"exam_id": 7.5}"#)?.description.contains("'exam_id'") == true)
        #expect(try failure(ExamIDParams.self, "{}")?.description.contains("missing 'exam_id'") == true)
        #expect(try failure(ExamIDParams.self, #"{"exam_id": null}"#)?.description.contains("'exam_id'") == true)
        #expect(try failure(ScanRunParams.self, #"{"lines_per_frame": 70000}"#)?.description.contains("'lines_per_frame'") == true)
        #expect(try failure(ScanRunParams.self, #"{"lines": -1}"#)?.description.contains("'lines'") == true)
        #expect(try failure(ScanRunParams.self, #"{"x_um": 1e300}"#) != nil)
        #expect(try failure(ExamRepeatParams.self, #"{"exam_id": 1, "site": "left_knee"}"#)?.description.contains("'site'") == true)
        // Optional fields may be null or absent.
        #expect(try failure(ScanRunParams.self, #"{"lines": null}"#) == nil)
    }

    /// Every parameter type decodes its own encoding (the CLI sends exactly what it builds).
    @Test func everyParameterTypeRoundTrips() throws {
        func roundTrip<T: Codable & Equatable>(_ v: T) throws {
            #expect(try StrictDecoder.decode(T.self, from: try JSONValue(encoding: v)) == v)
        }
        var answers = ChecklistAnswers()
        answers.pregnancy = .no; answers.contrast = .noStudy; answers.metal = [.leftHip]; answers.heightCm = 160
        try roundTrip(ExamChecklistParams(examID: 4, answers: answers))
        try roundTrip(ExamCreateParams(patient: PatientRecord(id: "P", name: "N", sex: .male, birthDate: "1950-02-03"), referral: "r"))
        try roundTrip(ScanRunParams(mode: "dual", xUm: 1, yStartUm: 2, lines: 3, lineStepUm: 4, linePeriodUs: 5, tubeCurrentUA: 6,
                                    linesPerFrame: 7, role: "qc", region: "ap_spine", phantom: "/p", withReferences: true))
        try roundTrip(MoveParams(xUm: 1, yUm: 2, armAngleDeg: 90))
        try roundTrip(CalibrateParams(phantom: "/p", lineStepUm: 500))
        try roundTrip(MetricsParams(format: .prometheus))
        try roundTrip(ExamSkipParams(examID: 1, site: .rightHip, reason: "prosthesis"))
    }

    /// The arm angle goes to the device in tenths of a degree; anything finer is refused.
    @Test func armAngleInDegrees() throws {
        #expect(try MoveParams(xUm: 0, yUm: 0, armAngleDeg: 90).armAngleX10.get() == 900)
        #expect(try MoveParams(xUm: 0, yUm: 0, armAngleDeg: -12.3).armAngleX10.get() == -123)
        if case .success = MoveParams(xUm: 0, yUm: 0, armAngleDeg: 12.34).armAngleX10 { Issue.record("12.34° accepted") }
        if case .success = MoveParams(xUm: 0, yUm: 0, armAngleDeg: 4000).armAngleX10 { Issue.record("4000° accepted") }
    }
}
