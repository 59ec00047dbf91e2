"""Issue 15 item 6: reports the steering committee can read. On a built data set (four cases in Hà Nội),
hand-computed figures: support by type, age groups (under 16 / 16-17 / 18 and over; "trẻ em" only for under
16), identified victims, communes by name, the province by name, every key with its GLOSSARY label, dates
dd/mm/yyyy with the last day included; the same report as HTML, CSV and PDF, in Vietnamese and English."""

from __future__ import annotations

import asyncio
import csv
import io
import re
from datetime import timedelta

from services.oversight.models import ReportKind
from services.oversight.reports import VN, period_end
from shared.contract import (
    Classification,
    Decide,
    EvidenceKind,
    EvidenceRef,
    IdentifyDecision,
    ProtectDecision,
    ReceiveDecision,
    RecordService,
    VerifyDecision,
    VerifyResult,
)
from shared.domain import AgeBand, AgencyRole, Channel, DecisionMakingOrg, Role, TraffickingStatus
from tests.conftest import new_case_id
from tests.helpers.oversight_stack import auth, oversight_api
from tests.helpers.workflow_harness import actor, facts, running_workers
from workflows.case_workflow import CaseWorkflow

HOTLINE, SP, POLICE = (
    actor(AgencyRole.hotline),
    actor(AgencyRole.social_protection),
    actor(AgencyRole.police),
)
RAW_KEYS = [
    "hotline_111",
    "walk_in",
    "border_guard_handover",
    "embassy_repatriation",
    "open:",
    "under_16",
    "16_17",
    "not_relevant",
    "essential_needs",
    "medical_care",
    "reintegrate",
    "social_protection",
    "hotline<",
    "ActualVictim",
    "level_",
    "transferred_in",
    ">verify<",
    ">receive<",
    ">identify<",
    ">protect<",
]


def receive(who, channel, c=Classification.trafficking_suspected) -> Decide:
    return Decide(
        actor=who,
        justification="classified",
        decision=ReceiveDecision(classification=c, channel=channel),
    )


async def test_committee_report_figures_labels_and_formats(
    ts_env, db_pool, ring, task_queue, tmp_path
):
    async with (
        running_workers(ts_env.client, db_pool, ring, task_queue) as h,
        oversight_api(ts_env, db_pool, ring) as api,
    ):
        t0 = await ts_env.get_current_time()

        def f(channel, age, commune, sex=None, **kw):
            base = facts(new_case_id(), channel=channel, age_band=age, now=t0, **kw)
            return base.model_copy(update={"commune": commune, "sex": sex})

        a = await h.open(f(Channel.hotline_111, AgeBand.under_16, "00070", "Feminine"))
        b = await h.open(
            f(Channel.walk_in, AgeBand.age_16_17, "00070", "Feminine", opener=AgencyRole.commune)
        )
        c = await h.open(
            f(
                Channel.border_guard_handover,
                AgeBand.adult,
                "00073",
                "Masculine",
                opener=AgencyRole.border_guard,
            )
        )
        d = await h.open(
            f(
                Channel.embassy_repatriation,
                AgeBand.unknown,
                None,
                abroad=True,
                opener=AgencyRole.embassy,
            )
        )
        # A: classified, verified, identified as a victim, protected, two services (essential needs, medical care)
        await a.execute_update(CaseWorkflow.decide, receive(HOTLINE, Channel.hotline_111))
        await a.execute_update(
            CaseWorkflow.decide,
            Decide(
                actor=SP,
                justification="police reply",
                decision=VerifyDecision(result=VerifyResult.confirmed),
            ),
        )
        await a.execute_update(
            CaseWorkflow.decide,
            Decide(
                actor=POLICE,
                justification="statements",
                decision=IdentifyDecision(
                    status=TraffickingStatus.ActualVictimOfTrafficking,
                    deciding_org=DecisionMakingOrg.Police,
                    evidence=[
                        EvidenceRef(evidence_id="ev-1", kind=EvidenceKind.statement_of_person)
                    ],
                ),
            ),
        )
        await a.execute_update(
            CaseWorkflow.decide,
            Decide(
                actor=SP,
                justification="shelter",
                decision=ProtectDecision(measures=["safe_shelter"]),
            ),
        )
        for i, kind in enumerate(("essential_needs", "medical_care")):
            await a.execute_update(
                CaseWorkflow.record_service,
                RecordService(actor=SP, service_id=f"svc-a{i}", service_type=kind),
            )
        # B: classified, one service (essential needs) while in verification
        await b.execute_update(
            CaseWorkflow.decide, receive(actor(AgencyRole.commune), Channel.walk_in)
        )
        await b.execute_update(
            CaseWorkflow.record_service,
            RecordService(actor=SP, service_id="svc-b0", service_type="essential_needs"),
        )
        # C: not trafficking-related, closed; D: returnee, not yet classified
        await c.execute_update(
            CaseWorkflow.decide,
            receive(
                actor(AgencyRole.border_guard),
                Channel.border_guard_handover,
                Classification.not_relevant,
            ),
        )
        for hd, n in ((a, 7), (b, 3), (c, 2), (d, 1)):
            await h.events(hd.id, n)
        end = await ts_env.get_current_time()

        day0 = t0.astimezone(VN).replace(hour=0, minute=0, second=0, microsecond=0)
        last = end.astimezone(VN).replace(hour=0, minute=0, second=0, microsecond=0)
        period = {
            "province": "01",
            "from": day0.isoformat(),
            "to": (last + timedelta(days=1)).isoformat(),
        }
        sup = auth(ring, Role.supervisor)

        rep = (await api.get("/reports/ad_hoc", params=period, headers=sup)).json()
        assert rep["received"] == 4
        assert rep["by_age_group"] == {"under_16": 1, "16_17": 1, "adult": 1, "unknown": 1}
        assert rep["by_commune"] == {"00070": 2, "00073": 1, "unknown": 1}
        assert rep["by_sex"] == {"Feminine": 2, "Masculine": 1, "unknown": 1}
        assert rep["identified_victims"] == 1
        assert rep["support_by_type"] == [
            {"type": "essential_needs", "services": 2, "persons": 2},
            {"type": "medical_care", "services": 1, "persons": 1},
        ]
        assert rep["outcomes"] == {
            "not_relevant": 1,
            "open:receive": 1,
            "open:reintegrate": 1,
            "open:verify": 1,
        }
        titles = [k["title"] for k in rep["kpis"]]
        assert all(t.startswith("Tỷ lệ ") for t in titles)

        # ---- HTML in Vietnamese: labels, names, dates, wording -------------------------------------
        html = (
            await api.get("/reports/ad_hoc", params={**period, "format": "html"}, headers=sup)
        ).text
        text = re.sub(r"<style>.*?</style>", "", html)
        for raw in RAW_KEYS:
            assert raw not in text, raw
        assert "Địa bàn: Thành phố Hà Nội" in text
        first, last_day = day0.strftime("%d/%m/%Y"), last.strftime("%d/%m/%Y")
        assert f"Kỳ báo cáo: {first} – {last_day} (tính cả ngày cuối kỳ)" in text
        for label in (
            "Tổng đài 111",
            "Tự đến trình báo",
            "Bộ đội Biên phòng bàn giao",
            "Hồi hương qua cơ quan đại diện",
            "Dưới 16 tuổi (trẻ em)",
            "Từ đủ 16 đến dưới 18 tuổi",
            "Từ đủ 18 tuổi trở lên",
            "Chưa rõ tuổi",
            "Phường Hoàn Kiếm",
            "Phường Cửa Nam",
            "Hỗ trợ nhu cầu thiết yếu",
            "Hỗ trợ y tế",
            "Đang ở giai đoạn Hỗ trợ, tái hòa nhập cộng đồng",
            "Không liên quan đến mua bán người",
            "Số lần chuyển cấp trên do quá hạn",
            "Chỉ tiêu",
            "Số người được xác định là nạn nhân trong kỳ: 1",
            "Cơ quan bảo trợ xã hội",
            "Từ nước ngoài trở về",
            "Theo giới tính",
        ):
            assert label in text, label
        assert (
            "báo cáo vượt cấp" not in text.lower() and "Trẻ em" not in text
        )  # "trẻ em" only for under 16
        assert "<td>Hỗ trợ nhu cầu thiết yếu</td><td>2</td><td>2</td>" in text
        assert "<td>Phường Hoàn Kiếm</td><td>2</td>" in text
        # by sex, from the case's facts (d was opened without it: not recorded)
        assert "<td>Nữ</td><td>2</td>" in text and "<td>Nam</td><td>1</td>" in text
        assert "<td>Chưa có thông tin</td><td>1</td>" in text
        # the body that holds the role in the period (after the 2025 reorganisation: health)
        assert "Cơ quan bảo trợ xã hội (Sở Y tế (cơ quan chuyên môn về y tế cấp tỉnh))" in text
        assert "Số vụ việc đã phân loại / số vụ việc tiếp nhận" in text  # formulas in Vietnamese
        # 3 of 4 classified: 75%, written the Vietnamese way; the target is a "Chỉ tiêu" of ≥ 100%
        assert "<td>3</td><td>4</td><td>75%</td><td>≥ 100%</td><td>Chưa đạt</td>" in text

        # ---- English ----------------------------------------------------------------------------
        en = (
            await api.get(
                "/reports/ad_hoc", params={**period, "format": "html", "lang": "en"}, headers=sup
            )
        ).text
        en_text = re.sub(r"<style>.*?</style>", "", en)
        for raw in RAW_KEYS:
            assert raw not in en_text, raw
        assert "Jurisdiction: Thành phố Hà Nội" in en_text and "(last day included)" in en_text
        for label in (
            "Hotline 111",
            "Walk-in",
            "Under 16 (child)",
            "16–17",
            "18 and over",
            "Essential needs",
            "Escalations after a missed deadline",
            "Open, at Support and reintegration",
            "Persons identified as victims in the period: 1",
            "Share of NRM cases opened in the period that were classified at intake",
        ):
            assert label in en_text, label
        assert "<td>Female</td><td>2</td>" in en_text and "<td>Male</td><td>1</td>" in en_text
        assert "Social protection authority (Department of Health" in en_text

        # ---- CSV: keys for machines, labels for people -------------------------------------------
        rows = list(
            csv.reader(
                io.StringIO(
                    (
                        await api.get(
                            "/reports/ad_hoc", params={**period, "format": "csv"}, headers=sup
                        )
                    ).text
                )
            )
        )
        assert rows[0] == ["section", "key", "column", "value", "Mục", "Nội dung", "Cột"]
        assert [
            "by_age_group",
            "under_16",
            "count",
            "1",
            "Theo nhóm tuổi",
            "Dưới 16 tuổi (trẻ em)",
            "Số vụ việc",
        ] in rows
        assert [
            "support_by_type",
            "essential_needs",
            "persons",
            "2",
            "Hỗ trợ nạn nhân trong kỳ theo chế độ hỗ trợ",
            "Hỗ trợ nhu cầu thiết yếu",
            "Số người được hỗ trợ",
        ] in rows
        assert ["identified_victims", "total", "count", "1"] in [r[:4] for r in rows]

        # ---- PDF: the Vietnamese text is in it (pdftotext), and it is one or more A4 pages -----------
        pdf = await api.get("/reports/ad_hoc", params={**period, "format": "pdf"}, headers=sup)
        assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
        assert pdf.content.startswith(b"%PDF")
        (tmp_path / "r.pdf").write_bytes(pdf.content)
        proc = await asyncio.create_subprocess_exec(
            "/usr/bin/pdftotext",
            "-layout",
            str(tmp_path / "r.pdf"),
            "-",
            stdout=asyncio.subprocess.PIPE,
        )
        out = (await proc.communicate())[0].decode()
        assert proc.returncode == 0
        for label in (
            "BÁO CÁO ĐỘT XUẤT",
            "Thành phố Hà Nội",
            "Dưới 16 tuổi (trẻ em)",
            "Hỗ trợ nhu cầu thiết yếu",
            "Số lần chuyển cấp trên do quá hạn",
            f"{first} – {last_day}",
        ):
            assert label in out, label

        # ---- the annual report's title --------------------------------------------------------------
        y0 = day0.replace(month=1, day=1)
        r = await api.get(
            "/reports/annual",
            params={"province": "01", "from": y0.isoformat(), "format": "html"},
            headers=sup,
        )
        assert f"Báo cáo tổng kết công tác phòng, chống mua bán người năm {y0.year}" in r.text
        assert f"01/01/{y0.year} – 31/12/{y0.year} (tính cả ngày cuối kỳ)" in r.text
        assert period_end(ReportKind.annual, y0).year == y0.year + 1
        for hd in (a, b, c, d):
            await hd.terminate()
