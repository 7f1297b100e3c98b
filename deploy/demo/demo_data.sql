-- Demo data for the local stack (scripts/dev-up.sh): one course with an
-- instructor and two students, two lessons. Idempotent.
INSERT INTO realtime.user_roles (user_id, role) VALUES
    ('demo-instructor', 'instructor'),
    ('demo-admin', 'admin')
ON CONFLICT (user_id) DO UPDATE SET role = EXCLUDED.role;

INSERT INTO realtime.course_members (course_id, user_id, role) VALUES
    ('demo-course', 'demo-instructor', 'instructor'),
    ('demo-course', 'demo-student-1', 'student'),
    ('demo-course', 'demo-student-2', 'student')
ON CONFLICT (course_id, user_id) DO NOTHING;

INSERT INTO realtime.lessons (lesson_id, course_id) VALUES
    ('demo-lesson-1', 'demo-course'),
    ('demo-lesson-2', 'demo-course')
ON CONFLICT (lesson_id) DO NOTHING;
